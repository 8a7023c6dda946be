/** One system under test: where the load generator sends its requests, and how to stop it. */
export const Modes = ['direct', 'nginx', 'node', 'warden'] as const;
export type Mode = (typeof Modes)[number];

export interface Target {
  mode: Mode;
  /** Full MCP endpoint URL on loopback. */
  url: string;
  /** Extra request headers (`name: value`), e.g. the bearer token for mcp-warden. */
  headers: string[];
  /** The proxy process (nginx worker's master, or the gateway), for RSS sampling. */
  pid?: number;
  /** Human-readable description for the report. */
  describe: string;
  stop(): Promise<void>;
}
