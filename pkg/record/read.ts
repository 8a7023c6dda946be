import { createReadStream } from 'node:fs';

/** One line of a recording file as read: its text, and whether a newline ended it. */
export interface RawLine {
  text: string;
  terminated: boolean;
}

/** Stream a file's lines (split on `\n` only, so a stray `\r` stays visible to the hash). */
export async function* readLines(path: string): AsyncGenerator<RawLine> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of createReadStream(path)) {
    let buf: Buffer = rest.length === 0 ? (chunk as Buffer) : Buffer.concat([rest, chunk as Buffer]);
    let nl = buf.indexOf(0x0a);
    while (nl !== -1) {
      yield { text: buf.subarray(0, nl).toString('utf8'), terminated: true };
      buf = buf.subarray(nl + 1);
      nl = buf.indexOf(0x0a);
    }
    rest = Buffer.from(buf);
  }
  if (rest.length > 0) yield { text: rest.toString('utf8'), terminated: false };
}
