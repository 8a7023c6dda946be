import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { createKubeClient, type KubeClient } from '../client.js';

/**
 * Unit tests of the Kubernetes adapter script an API server on a real loopback socket (the cases
 * a real kube-apiserver produces rarely or only after minutes: 410 Gone, dropped watches, pruned
 * fields, outages). These are the parts every such test shares.
 */

/** Listens on a free loopback port; resolves with the server's base URL. */
export async function listenLoopback(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server and every connection still open on it (watches included). */
export function stopLoopback(server: Server): void {
  server.closeAllConnections();
  server.close();
}

/** A client of the scripted API server at `base`, as the sidecar builds one from a kubeconfig. */
export function loopbackClient(base: string): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'fake', server: base, skipTLSVerify: true }, { name: 'u' });
  return createKubeClient(kc);
}
