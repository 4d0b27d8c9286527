import { OPTIONS } from './options.ts';

/** Renders docs/configuration.md from the option table, so the reference can never drift. */
export function renderConfigurationDoc(): string {
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/options.ts by `npm run docs:config`; a test fails when this file drifts. -->',
    '',
    'smart-home reads its configuration once at start: environment variables win over the optional file',
    'named by `SMART_HOME_CONFIG` (JSON or YAML, keys as in the "file key" column, nested by dots), which',
    'wins over the defaults. Every value is validated together, and one run reports every problem. An',
    'unknown key in the file is an error, not a silent typo.',
    '',
    'With `NODE_ENV=production`, every option marked **required in production** must be set explicitly:',
    'the development defaults (generated PKI and keys under `SMART_HOME_DATA_DIR`, the embedded database)',
    'are refused, and start-up names each missing setting.',
    '',
    '| environment variable | file key | default | meaning |',
    '|---|---|---|---|',
  ];
  for (const o of OPTIONS) {
    const def =
      o.default === undefined
        ? '—'
        : Array.isArray(o.default)
          ? o.default.length
            ? o.default.join(',')
            : '(empty)'
          : String(o.default);
    const range =
      o.kind === 'int'
        ? ` Integer${o.min !== undefined ? ` ≥ ${o.min}` : ''}${o.max !== undefined ? `, ≤ ${o.max}` : ''}.`
        : '';
    const values = o.values ? ` One of: ${o.values.map((v) => `\`${v}\``).join(', ')}.` : '';
    const prod = o.productionRequired ? ' **Required in production.**' : '';
    lines.push(`| \`${o.env}\` | \`${o.key}\` | \`${def}\` | ${o.doc}${values}${range}${prod} |`);
  }
  lines.push(
    '',
    '`SMART_HOME_CONFIG` itself names the optional configuration file.',
    '',
    'Figures fixed by the partner contract are not options: the 60 s signature window and 120 s nonce',
    'memory (§3), the 600 s access-token lifetime and 10 s leeway (§2), the 30 s / 5 s barrier event',
    'window and 24 h idempotency (§6), the 4 KiB decision body (§6).',
    '',
  );
  return lines.join('\n');
}
