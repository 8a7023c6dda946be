import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { RequestListener } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { errorMessage } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import { type CertStore, readCertSecret } from './certs.js';
import type { KubeApi } from './kube.js';
import { certInfo, keyMatches } from './tls.js';

/**
 * Where the serving certificate comes from, and the HTTPS server that hot-reloads it.
 * Every replica runs a source; only the leader writes the Secret (see certs.ts).
 */
export interface ServingCert {
  cert: string;
  key: string;
  /** Trust bundle when known (ca.crt). */
  ca?: string;
  notAfter: Date;
}

export interface CertSource {
  current(): ServingCert | undefined;
  /** Resolves with the first certificate (waits for the leader to create the Secret). */
  ready(signal?: AbortSignal): Promise<ServingCert>;
  /** Re-read now (the leader calls this after writing, so it does not wait for the next poll). */
  refresh(): Promise<void>;
  on(event: 'change', listener: (cert: ServingCert) => void): void;
  close(): void;
}

interface SourceOptions {
  reloadMs: number;
  logger: Logger;
  onChange?: (cert: ServingCert) => void;
}

function pollingSource(load: () => Promise<ServingCert | undefined>, options: SourceOptions): CertSource {
  const events = new EventEmitter();
  let current: ServingCert | undefined;
  let closed = false;
  let inflight: Promise<void> | undefined;
  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      try {
        const next = await load();
        const changed =
          next !== undefined &&
          (current === undefined || next.cert !== current.cert || next.key !== current.key);
        // A pair caught mid-update (new key, old certificate) is skipped: the next poll sees both.
        if (changed && !keyMatches(next.cert, next.key)) {
          throw new Error('certificate and key do not match (caught mid-update?)');
        }
        if (changed) {
          current = next;
          options.onChange?.(next);
          events.emit('change', next);
        }
      } catch (err) {
        options.logger.warn(
          { err: errorMessage(err) },
          'cannot read the serving certificate (keeping the current one)',
        );
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };
  const timer = setInterval(() => void refresh(), options.reloadMs);
  timer.unref();
  void refresh();
  return {
    current: () => current,
    refresh,
    ready(signal) {
      if (current !== undefined) return Promise.resolve(current);
      return new Promise<ServingCert>((resolve, reject) => {
        const onAbort = () => {
          events.off('change', resolve);
          reject(new Error('aborted while waiting for the serving certificate'));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        events.once('change', (c: ServingCert) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(c);
        });
      });
    },
    on: (event, listener) => void events.on(event, listener),
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      events.removeAllListeners();
    },
  };
}

/** Serving cert from the shared Secret (self-managed mode). */
export function secretCertSource(kube: KubeApi, store: CertStore, options: SourceOptions): CertSource {
  return pollingSource(async () => {
    const { state } = await readCertSecret(kube, store);
    if (state === undefined || state.servingCertPem === '' || state.servingKeyPem === '') return undefined;
    return {
      cert: state.servingCertPem,
      key: state.servingKeyPem,
      ca: state.bundle.join(''),
      notAfter: certInfo(state.servingCertPem).notAfter,
    };
  }, options);
}

/** Serving cert from a mounted directory (cert-manager mode: tls.crt, tls.key, optional ca.crt). */
export function fileCertSource(dir: string, options: SourceOptions): CertSource {
  return pollingSource(async () => {
    const [cert, key] = await Promise.all([
      readFile(join(dir, 'tls.crt'), 'utf8'),
      readFile(join(dir, 'tls.key'), 'utf8'),
    ]);
    const ca = await readFile(join(dir, 'ca.crt'), 'utf8').catch(() => undefined);
    return { cert, key, ...(ca === undefined ? {} : { ca }), notAfter: certInfo(cert).notAfter };
  }, options);
}

/**
 * HTTPS server whose certificate follows `source`: each change calls `setSecureContext`, so new
 * connections get the new certificate while open ones finish on the old one.
 */
export async function startHttpsServer(options: {
  host: string;
  port: number;
  handler: RequestListener;
  source: CertSource;
  logger: Logger;
  signal?: AbortSignal;
}): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const first = await options.source.ready(options.signal);
  const server = createServer({ cert: first.cert, key: first.key, minVersion: 'TLSv1.2' }, options.handler);
  server.keepAliveTimeout = 30_000;
  // API servers keep connections open; recycling them now and then makes clients handshake again,
  // so a rotated certificate is actually exercised well before the old one expires.
  server.maxRequestsPerSocket = 200;
  options.source.on('change', (c) => {
    try {
      server.setSecureContext({ cert: c.cert, key: c.key, minVersion: 'TLSv1.2' });
      options.logger.info({ notAfter: c.notAfter.toISOString() }, 'serving certificate reloaded');
    } catch (err) {
      options.logger.error(
        { err: errorMessage(err) },
        'cannot load the new serving certificate (keeping the current one)',
      );
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `https://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
