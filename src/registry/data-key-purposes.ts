import { PURPOSE_OPERATOR_SECRETS } from '../identity/operators.ts';
import { PURPOSE_PII } from './apply.ts';
import { PURPOSE_PARTNER_SECRETS } from './partner-secrets.ts';
import { PURPOSE_PLATES } from './plate-tokens.ts';

/** Every purpose that has its own data-encryption key (DESIGN §5). */
export const DATA_KEY_PURPOSES = [
  PURPOSE_PII,
  PURPOSE_PLATES,
  PURPOSE_PARTNER_SECRETS,
  PURPOSE_OPERATOR_SECRETS,
];
