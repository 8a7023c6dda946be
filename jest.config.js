// Jest in native ESM mode (NODE_OPTIONS=--experimental-vm-modules, set by the npm scripts):
// jose and @kubernetes/client-node are ESM-only. swc strips types; `.js` specifiers map back to `.ts`.
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } },
    ],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testEnvironment: 'node',
  // Build outputs and caches (the image's staged app and dependencies carry package.json files).
  modulePathIgnorePatterns: ['<rootDir>/.cache/', '<rootDir>/out/'],
};

export default {
  testTimeout: 30000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{pkg,cmd,webhook}/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.test.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.test.ts'] },
  ],
};
