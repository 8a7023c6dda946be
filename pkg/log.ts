import { type Logger, pino } from 'pino';

/**
 * Structured JSON logs, one event per line (pino). Never log a token, a secret or an unmasked
 * payload: log names, codes, counts and digests only.
 *
 * Level from MCP_WARDEN_LOG_LEVEL (default info; `silent` in tests unless set).
 */
export type { Logger };

const defaultLevel =
  process.env['MCP_WARDEN_LOG_LEVEL'] ?? (process.env['JEST_WORKER_ID'] ? 'silent' : 'info');

export function createLogger(component: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: defaultLevel,
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: these keys are never written even if a caller passes them by mistake.
      redact: {
        paths: [
          'authorization',
          'token',
          '*.authorization',
          '*.token',
          'headers.authorization',
          'req.headers.authorization',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
