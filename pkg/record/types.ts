/**
 * The recording stage's interface, as the proxy pipeline calls it. `pkg/record` implements it.
 * Payloads given to a recorder are already masked.
 */
export interface RecordingHeader {
  session: string;
  principal: string;
  /** Pod name in-cluster, host name for the gateway. */
  pod: string;
  namespace?: string;
  transport: string;
  protocolVersion?: string;
  policies: Array<{ name: string; generation: number }>;
}

export type RecordEvent =
  | {
      type: 'message';
      direction: 'client-to-server' | 'server-to-client';
      message: unknown;
      /** `JSON.stringify(message)`, when the caller has it already: sealed as is, not serialized again. */
      json?: string;
    }
  | {
      type: 'decision';
      method: string;
      tool?: string;
      decision: 'allow' | 'deny' | 'approve';
      enforced: 'allow' | 'deny' | 'approve';
      policy: string;
      rule?: string;
      reason: string;
      requestId?: string | number | null;
    }
  | { type: 'mask'; method: string; detectors: Record<string, number> }
  | {
      /** What became of a call held for approval (pkg/approval). */
      type: 'approval';
      method: string;
      tool?: string;
      policy: string;
      rule?: string;
      outcome: 'approved' | 'denied' | 'expired' | 'cancelled' | 'pending' | 'unavailable' | 'rate-limited';
      approval?: string;
      decidedBy?: string;
      requestId?: string | number | null;
    };

export interface SessionRecorder {
  /** Append one event. Never throws: failures count in `recording_errors_total`. */
  record(event: RecordEvent): void;
  close(reason?: 'ended' | 'expired' | 'shutdown'): Promise<RecordingSummary | undefined>;
}

export interface RecordingSummary {
  session: string;
  principal: string;
  pod: string;
  startTime: string;
  endTime: string;
  messages: number;
  denied: number;
  location: string;
  sha256: string;
}

/** Per-session choices, from the policies' `recording` settings (`PolicyEngine.recording()`). */
export interface OpenOptions {
  /**
   * Where this session is recorded: `volume` (the recorder's directory) and/or `stdout`. Default:
   * every sink the recorder was created with. A sink the recorder lacks falls back to one it has.
   */
  sinks?: ReadonlyArray<'volume' | 'stdout'>;
  /** `none`: message lines keep method, id and direction but no payload. Default `masked`. */
  payloads?: 'masked' | 'none';
}

export interface Recorder {
  open(header: RecordingHeader, options?: OpenOptions): SessionRecorder;
  close(): Promise<void>;
}
