import { ErrorCodes, isWardenError, WardenError } from './errors.js';

describe('WardenError', () => {
  it('carries a stable code and chains its cause', () => {
    const cause = new Error('socket hang up');
    const err = new WardenError(ErrorCodes.upstream, 'upstream unreachable', { cause });
    expect(err.code).toBe('ERR_UPSTREAM');
    expect(err.cause).toBe(cause);
    expect(err.name).toBe('WardenError');
    expect(isWardenError(err, ErrorCodes.upstream)).toBe(true);
    expect(isWardenError(err, ErrorCodes.badJson)).toBe(false);
    expect(isWardenError(new Error('x'))).toBe(false);
  });
});
