import { randomBytes } from 'node:crypto';
import { WardenError } from '../errors.js';
import type { ApprovalPhase, MCPApprovalSpec } from '../policy/schema.js';
import type { ApprovalChange, ApprovalStore, PhaseWriteOptions, StoredApproval } from './types.js';

/**
 * Approvals in memory: for tests, and for a data path that has no cluster to keep them in. The
 * reviewer side is `decide` (what the admission webhook admits through the API server: a verdict
 * once, stamped with who decided).
 */
export class MemoryApprovalStore implements ApprovalStore {
  readonly #items = new Map<string, StoredApproval>();
  readonly #listeners = new Set<(change: ApprovalChange) => void>();
  #version = 0;
  #ready = true;
  #createDelayMs = 0;
  /** The creator recorded on every approval (what the webhook would stamp). */
  readonly #creator: string | undefined;

  constructor(options: { creator?: string } = {}) {
    this.#creator = options.creator;
  }

  async create(spec: MCPApprovalSpec, labels: Record<string, string>): Promise<StoredApproval> {
    if (this.#createDelayMs > 0) await new Promise((r) => setTimeout(r, this.#createDelayMs));
    if (!this.#ready) throw new WardenError('ERR_KUBE', 'the approval store is not reachable');
    const name = `${spec.pod.slice(0, 40)}-${randomBytes(4).toString('hex')}`;
    const a: StoredApproval = {
      name,
      resourceVersion: String(++this.#version),
      spec: structuredClone(spec),
      phase: undefined,
      phaseTime: undefined,
      holder: undefined,
      created: new Date().toISOString(),
      createdBy: this.#creator,
      labels: { ...labels },
    };
    this.#items.set(name, a);
    this.#emit(a, false);
    return a;
  }

  async setPhase(
    name: string,
    phase: ApprovalPhase,
    _message: string,
    ifResourceVersion?: string,
    options: PhaseWriteOptions = {},
  ): Promise<boolean> {
    const a = this.#items.get(name);
    if (a === undefined) throw new WardenError('ERR_KUBE', `approval ${name} not found`);
    if (ifResourceVersion !== undefined && a.resourceVersion !== ifResourceVersion) return false;
    this.#update(name, {
      phase,
      phaseTime: options.transitionTime ?? new Date().toISOString(),
      ...(options.holder !== undefined ? { holder: options.holder } : {}),
    });
    return true;
  }

  async setHolder(
    name: string,
    holder: string,
    phase: ApprovalPhase,
    ifResourceVersion: string,
  ): Promise<boolean> {
    const a = this.#items.get(name);
    if (a === undefined) throw new WardenError('ERR_KUBE', `approval ${name} not found`);
    if (a.resourceVersion !== ifResourceVersion) return false;
    this.#update(name, { holder, phase });
    return true;
  }

  /** The reviewer's verdict (refused once one exists, as the CRD and the webhook refuse it). */
  decide(
    name: string,
    verdict: 'Approved' | 'Denied',
    decidedBy: string,
    reason?: string,
    options: { acknowledgeMaskedArguments?: boolean } = {},
  ): void {
    const a = this.#items.get(name);
    if (a === undefined) throw new Error(`approval ${name} not found`);
    if (a.spec.decision !== undefined) throw new Error(`approval ${name} is already decided`);
    const ack = options.acknowledgeMaskedArguments;
    this.#update(name, {
      spec: {
        ...a.spec,
        decision: {
          verdict,
          decidedBy,
          ...(reason !== undefined ? { reason } : {}),
          ...(ack !== undefined ? { acknowledgeMaskedArguments: ack } : {}),
        },
      },
    });
  }

  delete(name: string): void {
    const a = this.#items.get(name);
    if (a === undefined) return;
    this.#items.delete(name);
    this.#emit(a, true);
  }

  /** Testing seam: a slow backend (each create takes this long). */
  setCreateDelay(ms: number): void {
    this.#createDelayMs = ms;
  }

  /** Testing seam: a store whose backend is unreachable. */
  setReady(ready: boolean): void {
    this.#ready = ready;
  }

  get(name: string): StoredApproval | undefined {
    return this.#items.get(name);
  }

  list(): Iterable<StoredApproval> {
    return this.#items.values();
  }

  subscribe(listener: (change: ApprovalChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  ready(): boolean {
    return this.#ready;
  }

  synced(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }

  #update(name: string, patch: Partial<StoredApproval>): void {
    const a = this.#items.get(name)!;
    const next: StoredApproval = { ...a, ...patch, resourceVersion: String(++this.#version) };
    this.#items.set(name, next);
    this.#emit(next, false);
  }

  #emit(a: StoredApproval, deleted: boolean): void {
    for (const l of [...this.#listeners]) l({ approval: a, deleted });
  }
}
