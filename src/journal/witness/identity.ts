/**
 * smart-home's identity as a witness (contract §8.2): the Ed25519 key and name with which it cosigns
 * partners' checkpoints (C2SP cosignature/v1). Partners register its verifier key string (type 0x04,
 * printed by `smart-home keys`) as the witness of their log.
 */
import type { Config } from '../../config/config.ts';
import { loadSigningKey } from '../../keys/service-keys.ts';
import { cosigner, type NoteSigner } from '../../tlog/note.ts';

export class WitnessIdentityError extends Error {
  readonly code = 'ERR_WITNESS_IDENTITY';
}

export async function loadWitnessCosigner(config: Config): Promise<NoteSigner> {
  const key = await loadSigningKey(config.witness.keyFile, 'Ed25519');
  try {
    return cosigner(config.witness.name, key.privateKey);
  } catch (err) {
    throw new WitnessIdentityError(`SMART_HOME_WITNESS_NAME: ${(err as Error).message}`);
  }
}
