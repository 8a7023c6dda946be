/**
 * The recording stage: hash-chained JSON Lines per session, sinks, verify / replay / export.
 * See docs/recordings.md.
 */

export { type ExportFilter, type ExportRecord, exportRecordings } from './export.js';
export { FORMAT, FORMAT_VERSION, GENESIS } from './format.js';
export {
  createRecorder,
  type FileRecorder,
  type RecorderOptions,
  recoverFile,
  statelessRecordingKey,
} from './recorder.js';
export { replayRecording } from './replay.js';
export type {
  OpenOptions,
  RecordEvent,
  Recorder,
  RecordingHeader,
  RecordingSummary,
  SessionRecorder,
} from './types.js';
export { type VerifyResult, verifyRecording } from './verify.js';
