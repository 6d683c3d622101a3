// ESLint for the whole tree (`npm run lint`, part of `npm test`). What it enforces:
// - the shape of the house (docs: "Shape of the house"): dependencies point one way,
//   web -> client -> shared <- server; `shared/`, `web/` and the browser half of `client/` use no
//   Node built-ins, no Node-only globals (`Buffer`, `process`, ...) and import no `*.node.ts`;
//   `shared/` no DOM globals either;
// - no import circle, `import type` included (import-x's no-cycle skips type imports; the local
//   rule below follows them, so a type-only circle such as the old session/relay-stream one fails);
// - typescript-eslint's recommended type-aware rules (floating and misused promises among them).
import { defineConfig } from 'eslint/config'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import importX from 'eslint-plugin-import-x'
import globals from 'globals'
import noTypeImportCycle from './scripts/eslint-no-type-import-cycle.js'

const JS = ['**/*.js']
/** Files that bundle for the browser, or may: everything in shared/, web/, and client/ but its Node siblings. */
const BROWSER_SIDE = ['shared/**/*.ts', 'web/**/*.ts', 'client/**/*.ts']
const NODE_SIBLINGS = ['client/**/*.node.ts']

/** Globals that exist only in Node; a browser bundle would fail on them at run time. */
const NODE_ONLY_GLOBALS = ['Buffer', 'process', 'global', 'require', 'module', '__dirname', '__filename', 'setImmediate', 'clearImmediate']
  .map(name => ({ name, message: 'Node-only global: browser-side code (shared/, web/, client/ but *.node.ts) must not use it; move the code to a *.node.ts sibling (for Buffer, use Uint8Array).' }))
/** Packages of the server and the CLI that run only in Node. */
const NODE_ONLY_PACKAGES = ['socket.io', 'ws', 'bufferutil', 'prom-client', 'commander', 'pino']
/** Globals that exist only in a page; `shared/` runs in Node too. */
const DOM_ONLY_GLOBALS = ['window', 'document', 'navigator', 'location', 'localStorage', 'sessionStorage', 'indexedDB', 'HTMLElement']
  .map(name => ({ name, message: 'DOM-only global: shared/ runs in Node and the browser alike.' }))

/** The direction rule: `target` may not import anything under `from`. */
const layer = (target, from, why) => ({ target: `./${target}`, from: from.map(dir => `./${dir}`), message: why })

export default defineConfig(
  { ignores: ['dist/**', 'web/dist/**', 'node_modules/**', 'test-artifacts/**', '.vite/**', 'coverage/**', 'test/fixtures/package/**'] },

  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    }
  },
  {
    rules: {
      // House idioms, kept: `try { socket.close() } catch {}` on teardown paths.
      'no-empty': ['error', { allowEmptyCatch: true }],
      // A `let` read by a callback before its one assignment (`status?.event(...)`) must stay a `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // isHost/isPort are `value is ...` guards, so a string they reject is `never` in the message after.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNever: true }],
      // Off: async functions without `await` are deliberate here (a throw becomes a rejection; an
      // interface wants a Promise); rewriting them is churn with no bug behind it.
      '@typescript-eslint/require-await': 'off',
      // Off: every hit stringifies an unknown wire value or abort reason on purpose (`String(err)`).
      '@typescript-eslint/no-base-to-string': 'off',
      // Off: the control characters in the validation regexes are the point (they reject them).
      'no-control-regex': 'off'
    }
  },
  {
    // tsc's noUnusedLocals and noUnusedParameters already report these in TypeScript.
    files: ['**/*.ts'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' }
  },
  {
    // Tests and benchmarks drive untyped code (the legacy libp2p-websocket-star client,
    // page.evaluate, raw socket.io replies); the product code keeps these rules on.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off'
    }
  },
  {
    // The copy meter wraps prototype methods it saved unbound, and calls them with `.call(this)`.
    files: ['bench/copy-meter.ts'],
    rules: { '@typescript-eslint/unbound-method': 'off' }
  },
  {
    files: JS,
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { ...globals.node } }
  },

  // Import graph: circles and direction.
  {
    plugins: { 'import-x': importX, local: { rules: { 'no-type-import-cycle': noTypeImportCycle } } },
    settings: {
      'import-x/resolver-next': [importX.createNodeResolver({ extensions: ['.ts', '.js', '.json'] })],
      'import-x/extensions': ['.ts', '.js']
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'local/no-type-import-cycle': 'error',
      'import-x/no-restricted-paths': ['error', {
        zones: [
          layer('shared', ['server', 'client', 'web', 'cli'], 'shared/ is the protocol: it imports nothing from server/, client/, web/ or cli/.'),
          layer('client', ['server', 'web', 'cli'], 'client/ depends on shared/ only (web -> client -> shared <- server).'),
          layer('server', ['client', 'web', 'cli'], 'server/ depends on shared/ only (web -> client -> shared <- server).'),
          layer('web', ['server', 'cli'], 'web/ depends on client/ and shared/ only (web -> client -> shared <- server).')
        ]
      }]
    }
  },

  // Browser side: no Node built-ins, Node-only globals or *.node.ts siblings. The package's subpath
// imports (`#noise-aead` in package.json `imports`) pick a Node or a browser file by condition
// (`node`: client/noise/aead.node.ts; `default`: aead.browser.ts): the rule below does not see
// through them, on purpose, and `vite build` (default condition) must bundle no `node:` import.
  {
    files: BROWSER_SIDE,
    ignores: NODE_SIBLINGS,
    rules: {
      'import-x/no-nodejs-modules': 'error',
      'no-restricted-globals': ['error', ...NODE_ONLY_GLOBALS],
      '@typescript-eslint/no-restricted-imports': ['error', {
        paths: NODE_ONLY_PACKAGES.map(name => ({ name, message: 'Node-only package: browser-side code must not import it.' })),
        patterns: [{
          regex: '\\.node(\\.ts)?$',
          allowTypeImports: true,
          message: 'A *.node.ts module is Node-only: browser-side code may import its types, not its values.'
        }]
      }]
    }
  },
  {
    files: ['shared/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', ...NODE_ONLY_GLOBALS, ...DOM_ONLY_GLOBALS]
    }
  }
)
