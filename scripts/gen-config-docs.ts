import { writeFileSync } from 'node:fs';
import { renderConfigurationDoc } from '../src/config/config-docs.ts';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderConfigurationDoc());
process.stdout.write('wrote docs/configuration.md\n');
