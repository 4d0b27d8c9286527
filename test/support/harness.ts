import type { PartnerIdentity } from '../../simulator/identity.ts';
import { type LocalStack, type StackPartner, startLocalStack } from '../../simulator/local-stack.ts';
import type { ProvisioningDocument } from '../../src/registry/document.ts';
import { createTestDb } from './test-db.ts';

export type Harness = LocalStack;

/** The local stack on a fresh test database: in-memory PGlite, or a new schema of the real PostgreSQL. */
export async function startHarness(opts: {
  partners: StackPartner[];
  document: (ids: Map<string, PartnerIdentity>) => ProvisioningDocument;
  env?: Record<string, string>;
}): Promise<Harness> {
  return startLocalStack({ ...opts, db: await createTestDb() });
}
