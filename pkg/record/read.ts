import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';

/** One line of a recording file as read: its text, and whether a newline ended it. */
export interface RawLine {
  text: string;
  terminated: boolean;
  /**
   * Whether the line's bytes are valid UTF-8. Only then is `text` their exact image: an invalid
   * byte decodes to U+FFFD, so hashing `text` would vouch for bytes the file does not hold.
   */
  utf8: boolean;
}

const lineOf = (bytes: Buffer, terminated: boolean): RawLine => ({
  text: bytes.toString('utf8'),
  terminated,
  utf8: isUtf8(bytes),
});

/** Stream a file's lines (split on `\n` only, so a stray `\r` stays visible to the hash). */
export async function* readLines(path: string): AsyncGenerator<RawLine> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of createReadStream(path)) {
    let buf: Buffer = rest.length === 0 ? (chunk as Buffer) : Buffer.concat([rest, chunk as Buffer]);
    let nl = buf.indexOf(0x0a);
    while (nl !== -1) {
      yield lineOf(buf.subarray(0, nl), true);
      buf = buf.subarray(nl + 1);
      nl = buf.indexOf(0x0a);
    }
    rest = Buffer.from(buf);
  }
  if (rest.length > 0) yield lineOf(rest, false);
}
