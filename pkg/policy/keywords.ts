import type { ErrorObject } from 'ajv';
import { compileSelfRule } from './cel.js';
import type { CelRule } from './schema.js';

/**
 * The validating x-kubernetes-* schema keywords, as factories from the keyword's schema value to
 * an ajv `compile` keyword function. Both the runtime ajv (validate.ts) and the precompiled
 * validator (validator.generated.ts) build their keyword functions here, so they behave alike.
 */
interface CxtLike {
  instancePath: string;
}

export type KeywordFn = ((data: unknown, cxt?: CxtLike) => boolean) & { errors?: Partial<ErrorObject>[] };

/** List-map keys must be unique, exactly as the API server enforces for x-kubernetes-list-type: map. */
export function listMapKeys(keys: string[]): KeywordFn {
  const fn: KeywordFn = (data, cxt) => {
    fn.errors = [];
    if (!Array.isArray(data)) return true;
    const seen = new Map<string, number>();
    data.forEach((item, i) => {
      if (typeof item !== 'object' || item === null) return;
      const values = keys.map((k) => (item as Record<string, unknown>)[k]);
      if (values.some((v) => v === undefined)) return;
      const key = JSON.stringify(values);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else {
        fn.errors!.push({
          instancePath: `${cxt?.instancePath ?? ''}/${i}/${keys[0]}`,
          keyword: 'x-kubernetes-list-map-keys',
          message: `duplicate ${keys.join('+')} ${values.map((v) => JSON.stringify(v)).join('+')}: already used by item [${first}]; must be unique`,
          params: {},
        });
      }
    });
    return fn.errors.length === 0;
  };
  return fn;
}

/**
 * The CEL rules the API server evaluates, evaluated here by cel-js. Transition rules (oldSelf)
 * only make sense on updates in the API server and are skipped.
 */
export function celValidations(rules: CelRule[]): KeywordFn {
  const programs = rules
    .filter((r) => !/\boldSelf\b/.test(r.rule))
    .map((r) => {
      const { program, issues } = compileSelfRule(r.rule);
      if (program === undefined)
        throw new Error(`schema CEL rule ${r.rule} does not compile: ${issues.join('; ')}`);
      return { rule: r, program };
    });
  const fn: KeywordFn = (data, cxt) => {
    fn.errors = [];
    if (typeof data !== 'object' || data === null) return true;
    for (const { rule, program } of programs) {
      let ok: unknown;
      try {
        ok = program.evaluate({ self: data });
      } catch {
        ok = false; // the API server refuses an object whose rule cannot be evaluated; so do we
      }
      if (ok !== true) {
        const field = (rule.fieldPath ?? '').replace(/^\./, '/').replaceAll('.', '/');
        fn.errors.push({
          instancePath: `${cxt?.instancePath ?? ''}${field}`,
          keyword: 'x-kubernetes-validations',
          message: rule.message,
          params: { rule: rule.rule },
        });
      }
    }
    return fn.errors.length === 0;
  };
  return fn;
}
