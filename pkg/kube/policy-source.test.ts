import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { createLogger } from '../log.js';
import type { PolicyEngine } from '../policy/decision.js';
import { createKubePolicySource, type PolicyObject } from './policy-source.js';
import { listenLoopback, loopbackClient, stopLoopback } from './testing/loopback.js';

/**
 * Watch protocol handling against a scripted API server on a real loopback socket: the cases a
 * real kube-apiserver produces rarely or only after minutes (410 Gone inside the stream and on the
 * request, dropped connections, outages). The e2e suite covers the happy paths on a real one.
 */
interface Hit {
  watch: boolean;
  resourceVersion: string | null;
  at: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, hit: Hit) => void;

let server: Server;
let base: string;
const hits: Hit[] = [];
let lists: Handler[] = [];
let watches: Handler[] = [];
const open: ServerResponse[] = [];
let onHit: () => void = () => undefined;

/** Resolves once the fake server has seen `n` requests. */
function waitHits(n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (hits.length >= n) resolve();
      else onHit = check;
    };
    check();
  });
}

function policy(
  name: string,
  generation: number,
  rv: string,
  selector: Record<string, unknown> = {},
): PolicyObject {
  return {
    metadata: { name, namespace: 'agents', generation, resourceVersion: rv, uid: `uid-${name}` },
    spec: { podSelector: selector },
  };
}

const listOf =
  (rv: string, items: PolicyObject[]): Handler =>
  (_req, res) => {
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ metadata: { resourceVersion: rv }, items }));
  };

function event(res: ServerResponse, type: string, object: unknown): void {
  res.write(`${JSON.stringify({ type, object })}\n`);
}

/** A fake engine that only knows its policies' names and generations. */
const compile = (docs: PolicyObject[]): PolicyEngine =>
  ({
    policies: () => docs.map((d) => ({ name: d.metadata.name, generation: d.metadata.generation ?? 0 })),
  }) as unknown as PolicyEngine;

const names = (e: PolicyEngine | undefined): string[] | undefined =>
  e?.policies().map((p) => `${p.name}@${p.generation}`);

beforeEach(async () => {
  hits.length = 0;
  lists = [];
  watches = [];
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const hit = {
      watch: url.searchParams.get('watch') === '1',
      resourceVersion: url.searchParams.get('resourceVersion'),
      at: Date.now(),
    };
    hits.push(hit);
    setImmediate(() => onHit());
    const next = (hit.watch ? watches : lists).shift();
    if (next === undefined) {
      // Unscripted: hang (a watch with no events) until the test ends.
      if (hit.watch) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        open.push(res);
      } else {
        res.writeHead(500).end('{"message":"unscripted"}');
      }
      return;
    }
    if (hit.watch) open.push(res);
    next(req, res, hit);
  });
  base = await listenLoopback(server);
});

afterEach(async () => {
  for (const r of open.splice(0)) r.destroy();
  stopLoopback(server);
});

function client() {
  return loopbackClient(base);
}

function changes(source: { onChange(l: (e: PolicyEngine | undefined) => void): () => void }) {
  const seen: Array<string[] | undefined> = [];
  const waiters: Array<{ pred: (e: string[] | undefined) => boolean; resolve: () => void }> = [];
  source.onChange((e) => {
    const n = names(e);
    seen.push(n);
    for (const w of [...waiters]) {
      if (w.pred(n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    seen,
    until: (pred: (e: string[] | undefined) => boolean) =>
      new Promise<void>((resolve) => waiters.push({ pred, resolve })),
  };
}

describe('createKubePolicySource watch handling', () => {
  test('selects by labels, follows watch events, relists on a 410 ERROR event', async () => {
    lists.push(
      listOf('10', [policy('a', 1, '5'), policy('other', 1, '6', { matchLabels: { app: 'other' } })]),
    );
    watches.push((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      event(res, 'ADDED', policy('b', 1, '11'));
      event(res, 'ERROR', {
        kind: 'Status',
        code: 410,
        reason: 'Expired',
        message: 'too old resource version',
      });
    });
    lists.push(listOf('20', [policy('a', 1, '5'), policy('b', 1, '11'), policy('c', 2, '19')]));
    const source = createKubePolicySource({
      client: client(),
      namespace: 'agents',
      podLabels: { app: 'mcp' },
      compile,
      backoff: { initialMs: 10 },
    });
    const c = changes(source);
    await c.until((n) => n?.includes('c@2') === true);
    await waitHits(4);
    expect(c.seen).toEqual([['a@1'], ['a@1', 'b@1'], ['a@1', 'b@1', 'c@2']]);
    // list, watch from 10, relist (no resourceVersion), watch from 20.
    expect(hits.map((h) => [h.watch, h.resourceVersion])).toEqual([
      [false, null],
      [true, '10'],
      [false, null],
      [true, '20'],
    ]);
    await source.close();
  });

  test('a 410 on the watch request relists; a normally ended watch resumes from the last resourceVersion', async () => {
    lists.push(listOf('10', [policy('a', 1, '5')]));
    watches.push((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      event(res, 'MODIFIED', policy('a', 2, '12'));
      event(res, 'BOOKMARK', { metadata: { resourceVersion: '15' } });
      res.end();
    });
    watches.push((_req, res) => {
      res
        .writeHead(410, { 'content-type': 'application/json' })
        .end('{"kind":"Status","code":410,"reason":"Gone","message":"expired"}');
    });
    lists.push(listOf('30', [policy('a', 3, '29')]));
    const source = createKubePolicySource({
      client: client(),
      namespace: 'agents',
      podLabels: {},
      compile,
      backoff: { initialMs: 10 },
    });
    const c = changes(source);
    await c.until((n) => n?.[0] === 'a@3');
    await waitHits(5);
    expect(hits.map((h) => [h.watch, h.resourceVersion])).toEqual([
      [false, null],
      [true, '10'],
      [true, '15'],
      [false, null],
      [true, '30'],
    ]);
    expect(c.seen).toEqual([['a@1'], ['a@2'], ['a@3']]);
    await source.close();
  });

  test('fails closed before the first load, retries with capped backoff, and after the grace period', async () => {
    for (let i = 0; i < 5; i++) lists.push((_req, res) => res.writeHead(503).end('{"message":"etcd down"}'));
    lists.push(listOf('10', [policy('a', 1, '5')]));
    watches.push((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      // The API server goes away while the watch is open.
      setTimeout(() => res.destroy(), 50);
    });
    // ...and stays away (every list fails) until the grace period has passed.
    for (let i = 0; i < 1000; i++) lists.push((_req, res) => res.writeHead(503).end('{"message":"down"}'));
    const errors: Error[] = [];
    // The delays the loop chose, from its log (wall-clock gaps between attempts grow on a busy
    // machine: a timed bound failed under a full test run).
    const retries: number[] = [];
    const logger = createLogger(
      'test',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString('utf8').split('\n')) {
            const retry = line === '' ? undefined : (JSON.parse(line) as { retryInMs?: number }).retryInMs;
            if (retry !== undefined) retries.push(retry);
          }
          done();
        },
      }),
    );
    logger.level = 'warn'; // silent by default under jest
    const source = createKubePolicySource({
      client: client(),
      namespace: 'agents',
      podLabels: {},
      compile,
      gracePeriodMs: 600,
      backoff: { initialMs: 20, maxMs: 80 },
      onError: (e) => errors.push(e),
      logger,
    });
    expect(source.current()).toBeUndefined();
    const c = changes(source);
    await c.until((n) => n !== undefined);
    expect(names(source.current())).toEqual(['a@1']);
    const listHits = hits.filter((h) => !h.watch).slice(0, 6);
    const gaps = listHits.slice(1).map((h, i) => h.at - (listHits[i] as Hit).at);
    // Exponential backoff, capped (each pause is jittered to half to all of it): 20, 40, 80, 80, 80.
    expect(retries.slice(0, 5)).toEqual([20, 40, 80, 80, 80]);
    // Every pause happened: no attempt came sooner than half its delay.
    for (const [i, gap] of gaps.entries()) expect(gap).toBeGreaterThanOrEqual(retries[i]! / 2 - 2);
    expect(errors.some((e) => e.message.includes('etcd down'))).toBe(true);

    const brokeAt = Date.now();
    await c.until((n) => n === undefined);
    expect(Date.now() - brokeAt).toBeGreaterThanOrEqual(500);
    expect(source.current()).toBeUndefined();
    await source.close();
  });

  test('relabelling the pod reselects the policies', async () => {
    lists.push(
      listOf('10', [
        policy('for-x', 1, '5', { matchLabels: { app: 'x' } }),
        policy('for-y', 1, '6', { matchLabels: { app: 'y' } }),
      ]),
    );
    const source = createKubePolicySource({
      client: client(),
      namespace: 'agents',
      podLabels: { app: 'x' },
      compile,
    });
    const c = changes(source);
    await c.until((n) => n !== undefined);
    expect(names(source.current())).toEqual(['for-x@1']);
    source.setPodLabels({ app: 'x' }); // unchanged: nothing happens
    source.setPodLabels({ app: 'y' });
    expect(names(source.current())).toEqual(['for-y@1']);
    expect(c.seen).toEqual([['for-x@1'], ['for-y@1']]);
    await source.close();
  });
});
