// Config files in YAML as well as JSON (`serve --config x.yaml`): by extension, one schema for
// both; the same settings give the same resolved config; a malformed file is CB_ERR_CONFIG_FILE
// naming the file, the line and the column.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isYamlConfig, readConfigFile, resolveServeConfig } from '../src/server/config.js';
import { main } from '../src/server/cli.js';
import { tempDir } from './helpers/pki.js';

const dir = tempDir('cb-config-yaml-');
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const SETTINGS = {
  host: '0.0.0.0',
  port: 9443,
  cert: 'pki/server.pem',
  key: 'pki/server.key',
  ca: ['pki/ca-bundle.pem'],
  clientAuth: 'require',
  logLevel: 'warn',
  onDemandHosts: ['admin.example.com', '*.internal'],
  mapper: { oneToOne: [{ thumbprint: 'ab'.repeat(20), identity: 'alice' }], denyUnmapped: true },
};

const YAML_TEXT = `# The same settings as the JSON file, with the comments YAML allows.
host: 0.0.0.0
port: 9443
cert: pki/server.pem      # relative to the working directory, as in JSON
key: pki/server.key
ca:
  - pki/ca-bundle.pem
clientAuth: require
logLevel: warn
onDemandHosts: [admin.example.com, "*.internal"]
mapper:
  oneToOne:
    - thumbprint: ${'ab'.repeat(20)}
      identity: alice
  denyUnmapped: true
`;

test('the same settings as JSON and as YAML resolve to the same config', () => {
  const json = file('certbound.json', JSON.stringify(SETTINGS));
  const yaml = file('certbound.yaml', YAML_TEXT);
  const yml = file('certbound.YML', YAML_TEXT);
  assert.deepEqual(readConfigFile(yaml), SETTINGS);
  const fromJson = resolveServeConfig({ config: json, port: '10443' });
  for (const path of [yaml, yml]) {
    const fromYaml = resolveServeConfig({ config: path, port: '10443' });
    assert.deepEqual({ ...fromYaml, config: json }, fromJson, path);
  }
  assert.equal(fromJson.port, 10443, 'a flag still overrides the file');
  assert.equal(fromJson.cert, 'pki/server.pem', 'paths are kept as written: relative to the working directory');
  assert.deepEqual([isYamlConfig('a.yaml'), isYamlConfig('a.yml'), isYamlConfig('a.YAML'), isYamlConfig('a.json'), isYamlConfig('a.conf'), isYamlConfig('yaml')], [true, true, true, false, false, false]);
  // Any other name is JSON: YAML text in certbound.conf is not JSON.
  assert.throws(() => readConfigFile(file('certbound.conf', YAML_TEXT)), { code: 'CB_ERR_CONFIG_FILE', message: /^Cannot read config file .*certbound\.conf: not JSON: / });
});

test('malformed YAML: CB_ERR_CONFIG_FILE with the file, line and column; bad values as in JSON', () => {
  const cases: [string, string, string][] = [
    ['unclosed.yaml', 'port: 9443\nca: [a.pem,\n', 'not YAML: line 3, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['duplicate.yaml', 'port: 9443\nhost: a\nport: 1\n', 'not YAML: line 3, column 1: Map keys must be unique'],
    ['two-docs.yml', 'port: 9443\n---\nport: 1\n', 'not YAML: line 2, column 1: Source contains multiple documents; please use YAML.parseAllDocuments()'],
    ['quote.yaml', 'host: "127.0.0.1\n', 'not YAML: line 2, column 1: Missing closing "quote'],
    ['alias.yaml', 'host: *nowhere\n', 'not YAML: Unresolved alias (the anchor must be set before the alias): nowhere'],
    ['list.yaml', '- port: 9443\n', 'expected a YAML mapping of keys'],
    ['tag.yaml', 'port: 9443\nhost: !custom 0.0.0.0\n', 'not YAML: line 2, column 7: Unresolved tag: !custom'],
    ['empty.yaml', '', 'expected a YAML mapping of keys'],
  ];
  for (const [name, text, why] of cases) {
    const path = file(name, text);
    assert.throws(() => readConfigFile(path), { code: 'CB_ERR_CONFIG_FILE', message: `Cannot read config file ${path}: ${why}` }, name);
  }
  // A "billion laughs" file stops at the yaml package's alias limit.
  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefgh'.split('').map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefgh'[i]}`).join(', ')}]`), 'host: *h'].join('\n');
  assert.throws(() => readConfigFile(file('laughs.yaml', laughs)), { code: 'CB_ERR_CONFIG_FILE', message: /laughs\.yaml: not YAML: Excessive alias count/ });
  // Well-formed YAML with a bad key or value: the schema's errors, as for JSON.
  assert.throws(() => readConfigFile(file('colour.yaml', 'colour: blue\n')), { code: 'CB_ERR_INVALID_OPTION', message: /^Invalid option colour: unknown key in .*colour\.yaml$/ });
  assert.throws(() => readConfigFile(file('mode.yaml', 'clientAuth: sometimes\n')), { code: 'CB_ERR_INVALID_OPTION', message: 'Invalid option clientAuth: expected one of none, optional, require, accept-untrusted, got "sometimes"' });
  // YAML 1.2: `port: "9443"` is a string, `yes` is not a boolean.
  assert.throws(() => readConfigFile(file('port.yaml', 'port: "9443x"\n')), { code: 'CB_ERR_INVALID_OPTION' });
});

test('serve --config with malformed YAML: exit code 1 and one line with the code, file and line', async () => {
  const path = file('serve.yaml', 'port: 9443\nhost: [\n');
  let stderr = '';
  const { error } = console;
  console.error = (...a: unknown[]) => { stderr += `${a.join(' ')}\n`; };
  try {
    assert.equal(await main(['serve', '--config', path]), 1);
  } finally {
    console.error = error;
  }
  assert.equal(stderr, `certbound: CB_ERR_CONFIG_FILE: Cannot read config file ${path}: not YAML: line 3, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]\n`);
});

test('docs/configuration.md: its YAML example and its JSON example are the same configuration', () => {
  const text = readFileSync(join(import.meta.dirname, '..', 'docs', 'configuration.md'), 'utf8');
  const block = (lang: string) => new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'm').exec(text)?.[1] ?? '';
  assert.deepEqual(readConfigFile(file('doc.yaml', block('yaml'))), readConfigFile(file('doc.json', block('json'))));
  assert.equal(readConfigFile(file('doc2.yaml', block('yaml'))).port, 9443);
});
