import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { sql } from '../../db/sql.ts';
import { HEARTBEAT_DEFAULTS, type HeartbeatSettings } from '../../device-health/heartbeat.ts';
import { parseVerifierKey, SIG_COSIGNATURE_V1, SIG_ED25519 } from '../../tlog/note.ts';
import { addPartnerSecret } from '../partner-secrets.ts';
import { rebuildPartnerPlateTokens } from '../plate-tokens.ts';
import {
  type Change,
  conflict,
  invalid,
  journalChange,
  notFound,
  type RegistryContext,
  refuseIfReferenced,
  replaceLinks,
  sameSet,
} from './context.ts';

export type PartnerJwk = JWK & { kid: string };

/**
 * A partner as an operator declares it. Never a secret: the partner's master secrets are created here
 * at onboarding and rotated only by the CLI's key ceremony (src/registry/partner-key-rotation.ts).
 */
export interface PartnerInput {
  code: string;
  name: string;
  enabled: boolean;
  scopes: string[];
  /** The perimeter: ids of the complexes it serves. */
  complexIds: string[];
  /** CIDR allowlist; a bare address is a /32 or /128. */
  networks: string[];
  /** RFC 8705 x5t#S256 thumbprints of its client certificates. */
  certificates: string[];
  signingKeys: PartnerJwk[];
  encryptionKeys: PartnerJwk[];
  baseUrl: string | null;
  /** Contract §7: how smart-home calls the partner (pinned server CA PEM, our client id, its token endpoint). */
  outbound: PartnerOutbound | null;
  /**
   * Contract §8.2: the verifier key of the partner's journal log, a C2SP signed-note key string
   * `name+id+key` of type Ed25519 (0x01); its name is the log's origin, unique among partners.
   * smart-home witnesses only checkpoints signed by it. Absent or null: none.
   */
  logKey?: string | null;
  /**
   * Contract §8.2: the partner's witness key, a `name+id+key` string of type cosignature/v1 (0x04),
   * that checks its cosignatures of smart-home's checkpoints. Absent or null: none.
   */
  witnessKey?: string | null;
  /**
   * Contract §9: how often its devices send heartbeats and after how many missed ones a device is
   * offline. Absent: 30 s and 3 on creation, unchanged on update.
   */
  heartbeat?: HeartbeatSettings | undefined;
}

export interface PartnerOutbound {
  serverCa: string;
  clientId: string;
  tokenEndpoint: string | null;
}

export type PartnerPatch = Partial<Omit<PartnerInput, 'code'>>;

type PartnerRow = {
  id: string;
  code: string;
  name: string;
  scopes: string[];
  enabled: boolean;
  base_url: string | null;
  server_ca_pem: string | null;
  outbound_client_id: string | null;
  token_endpoint: string | null;
  log_key: string | null;
  witness_key: string | null;
  heartbeat_interval_s: number;
  heartbeat_missed: number;
};

/** The bounds of migration 015, for callers that did not validate a schema (the service is shared). */
function checkHeartbeat(h: HeartbeatSettings): HeartbeatSettings {
  if (!Number.isInteger(h.intervalSeconds) || h.intervalSeconds < 5 || h.intervalSeconds > 3600)
    throw invalid('heartbeat/intervalSeconds', 'must be an integer from 5 to 3600');
  if (!Number.isInteger(h.missed) || h.missed < 1 || h.missed > 100)
    throw invalid('heartbeat/missed', 'must be an integer from 1 to 100');
  return h;
}

/** A verifier key string checked for its type; its name is the log origin for a log key. */
function checkVerifierKey(field: 'logKey' | 'witnessKey', vkey: string | null | undefined): string | null {
  if (vkey === undefined || vkey === null) return null;
  let k: ReturnType<typeof parseVerifierKey>;
  try {
    k = parseVerifierKey(vkey);
  } catch (err) {
    throw invalid(field, `not a signed-note verifier key: ${(err as Error).message}`);
  }
  const want = field === 'logKey' ? SIG_ED25519 : SIG_COSIGNATURE_V1;
  if (k.type !== want) {
    throw invalid(
      field,
      field === 'logKey'
        ? 'a log key is of type Ed25519 (0x01)'
        : 'a witness key is of type cosignature/v1 (0x04)',
    );
  }
  return vkey;
}

/** The origin of a log key (its name), refused when another partner's log has it. */
async function logOrigin(
  ctx: RegistryContext,
  partnerId: string,
  logKey: string | null,
): Promise<string | null> {
  if (logKey === null) return null;
  const origin = parseVerifierKey(logKey).name;
  const other = await ctx.tx.one(
    sql`select 1 from partners where log_origin = ${origin} and id <> ${partnerId}`,
  );
  if (other) throw conflict('logKey', "another partner's log has this origin");
  return origin;
}

function outboundColumns(o: PartnerOutbound | null) {
  return {
    serverCa: o ? o.serverCa.trim() : null,
    clientId: o?.clientId ?? null,
    tokenEndpoint: o?.tokenEndpoint ?? null,
  };
}

export async function createPartner(ctx: RegistryContext, input: PartnerInput): Promise<string> {
  if (await ctx.tx.one(sql`select 1 from partners where code = ${input.code}`))
    throw conflict('code', 'a partner with this code already exists');
  const id = randomUUID();
  const scopes = [...input.scopes].sort();
  if (input.outbound && !input.baseUrl) throw invalid('baseUrl', 'required with outbound');
  const o = outboundColumns(input.outbound);
  const logKey = checkVerifierKey('logKey', input.logKey);
  const witnessKey = checkVerifierKey('witnessKey', input.witnessKey);
  const origin = await logOrigin(ctx, id, logKey);
  const hb = checkHeartbeat(input.heartbeat ?? HEARTBEAT_DEFAULTS);
  await ctx.tx.query(sql`insert into partners (id, code, name, scopes, enabled, base_url,
      server_ca_pem, outbound_client_id, token_endpoint, log_key, log_origin, witness_key,
      heartbeat_interval_s, heartbeat_missed)
    values (${id}, ${input.code}, ${input.name}, ${scopes}, ${input.enabled}, ${input.baseUrl},
      ${o.serverCa}, ${o.clientId}, ${o.tokenEndpoint}, ${logKey}, ${origin}, ${witnessKey},
      ${hb.intervalSeconds}, ${hb.missed})`);
  await addPartnerSecret(ctx.tx, ctx.cipher, { id, code: input.code });
  await setPerimeter(ctx, id, input.complexIds);
  await setNetworks(ctx, id, input.networks);
  await setCertificates(ctx, id, input.certificates);
  await setKeys(ctx, 'partner_signing_keys', id, input.signingKeys, 'signingKeys');
  await setKeys(ctx, 'partner_encryption_keys', id, input.encryptionKeys, 'encryptionKeys');
  await journalChange(ctx, 'create', 'partner', id, { code: input.code, partnerId: id, scopes });
  await rebuildPartnerPlateTokens(ctx.tx, ctx.cipher, id);
  return id;
}

/** Brings the fields named in `patch` to their new values; lists replace the partner's lists. */
export async function updatePartner(ctx: RegistryContext, id: string, patch: PartnerPatch): Promise<Change> {
  const cur = await ctx.tx.one<PartnerRow>(
    sql`select id, code, name, scopes, enabled, base_url, server_ca_pem, outbound_client_id, token_endpoint,
          log_key, witness_key, heartbeat_interval_s, heartbeat_missed
        from partners where id = ${id} for update`,
  );
  if (!cur) throw notFound('partner');
  const name = patch.name ?? cur.name;
  const scopes = patch.scopes ? [...patch.scopes].sort() : cur.scopes;
  const enabled = patch.enabled ?? cur.enabled;
  const baseUrl = patch.baseUrl === undefined ? cur.base_url : patch.baseUrl;
  const o =
    patch.outbound === undefined
      ? { serverCa: cur.server_ca_pem, clientId: cur.outbound_client_id, tokenEndpoint: cur.token_endpoint }
      : outboundColumns(patch.outbound);
  if (o.serverCa && !baseUrl) throw invalid('baseUrl', 'required with outbound');
  const logKey = patch.logKey === undefined ? cur.log_key : checkVerifierKey('logKey', patch.logKey);
  const witnessKey =
    patch.witnessKey === undefined ? cur.witness_key : checkVerifierKey('witnessKey', patch.witnessKey);
  const origin = await logOrigin(ctx, id, logKey);
  const hb = patch.heartbeat
    ? checkHeartbeat(patch.heartbeat)
    : { intervalSeconds: cur.heartbeat_interval_s, missed: cur.heartbeat_missed };
  let changed = false;
  if (
    cur.name !== name ||
    !sameSet(cur.scopes, scopes) ||
    cur.enabled !== enabled ||
    cur.base_url !== baseUrl ||
    cur.server_ca_pem !== o.serverCa ||
    cur.outbound_client_id !== o.clientId ||
    cur.token_endpoint !== o.tokenEndpoint ||
    cur.log_key !== logKey ||
    cur.witness_key !== witnessKey ||
    cur.heartbeat_interval_s !== hb.intervalSeconds ||
    cur.heartbeat_missed !== hb.missed
  ) {
    changed = true;
    await ctx.tx.query(sql`update partners set name = ${name}, scopes = ${scopes}, enabled = ${enabled},
      base_url = ${baseUrl}, server_ca_pem = ${o.serverCa}, outbound_client_id = ${o.clientId},
      token_endpoint = ${o.tokenEndpoint}, log_key = ${logKey}, log_origin = ${origin},
      witness_key = ${witnessKey}, heartbeat_interval_s = ${hb.intervalSeconds},
      heartbeat_missed = ${hb.missed}, updated_at = now() where id = ${id}`);
  }
  if (patch.complexIds) changed = (await setPerimeter(ctx, id, patch.complexIds)) || changed;
  if (patch.networks) changed = (await setNetworks(ctx, id, patch.networks)) || changed;
  if (patch.certificates) changed = (await setCertificates(ctx, id, patch.certificates)) || changed;
  if (patch.signingKeys)
    changed = (await setKeys(ctx, 'partner_signing_keys', id, patch.signingKeys, 'signingKeys')) || changed;
  if (patch.encryptionKeys)
    changed =
      (await setKeys(ctx, 'partner_encryption_keys', id, patch.encryptionKeys, 'encryptionKeys')) || changed;
  if (!changed) return 'unchanged';
  if (!scopes.includes('barrier:decide') && cur.scopes.includes('barrier:decide')) {
    const barrier = await ctx.tx.one(
      sql`select 1 from devices where partner_id = ${id} and kind = 'barrier'`,
    );
    if (barrier) throw conflict('scopes', 'the partner has barriers, which need the barrier:decide scope');
  }
  if (patch.complexIds) {
    // A perimeter may not shrink away from the partner's own devices.
    const stray = await ctx.tx.one(sql`select 1 from devices d where d.partner_id = ${id}
      and not exists (select 1 from partner_complexes pc where pc.partner_id = ${id} and pc.complex_id = d.complex_id)`);
    if (stray) throw conflict('complexIds', 'the partner has devices in a complex this perimeter leaves out');
  }
  await journalChange(ctx, 'update', 'partner', id, { code: cur.code, partnerId: id, scopes });
  if (scopes.includes('barrier:decide') !== cur.scopes.includes('barrier:decide'))
    await rebuildPartnerPlateTokens(ctx.tx, ctx.cipher, id);
  return 'update';
}

/** Deletes a partner with its perimeter, networks, certificates, keys, secrets, plate tokens and processed events. */
export async function deletePartner(ctx: RegistryContext, id: string): Promise<void> {
  const cur = await ctx.tx.one<{ code: string }>(sql`select code from partners where id = ${id} for update`);
  if (!cur) throw notFound('partner');
  await refuseIfReferenced([
    { what: 'devices', exists: () => ctx.tx.one(sql`select 1 from devices where partner_id = ${id}`) },
    {
      what: 'recorded barrier decisions (kept 24 h for idempotent retries)',
      exists: () => ctx.tx.one(sql`select 1 from barrier_decisions where partner_id = ${id}`),
    },
    {
      what: 'partner events not yet processed',
      exists: () =>
        ctx.tx.one(sql`select 1 from event_inbox where partner_id = ${id} and processed_at is null limit 1`),
    },
  ]);
  // Its processed events go with it (the journal keeps what they recorded), and its sequence cursor.
  await ctx.tx.query(sql`delete from event_inbox where partner_id = ${id}`);
  await ctx.tx.query(sql`delete from event_cursors where partner_id = ${id}`);
  await ctx.tx.query(sql`delete from partners where id = ${id}`);
  await journalChange(ctx, 'delete', 'partner', id, { code: cur.code, partnerId: id });
}

async function setPerimeter(ctx: RegistryContext, partnerId: string, complexIds: string[]): Promise<boolean> {
  for (const [i, c] of complexIds.entries()) {
    if (!(await ctx.tx.one(sql`select 1 from complexes where id = ${c}`)))
      throw invalid(`complexIds/${i}`, 'unknown complex');
  }
  return replaceLinks(
    ctx,
    { table: 'partner_complexes', owner: 'partner_id', item: 'complex_id' },
    partnerId,
    complexIds,
  );
}

async function setNetworks(ctx: RegistryContext, partnerId: string, cidrs: string[]): Promise<boolean> {
  const normalized: string[] = [];
  for (const [i, n] of cidrs.entries()) {
    const c = n.includes('/') ? n : n.includes(':') ? `${n}/128` : `${n}/32`;
    try {
      normalized.push((await ctx.tx.one<{ c: string }>(sql`select ${c}::cidr::text as c`))!.c);
    } catch {
      // The refused cast aborts the transaction on PostgreSQL: the caller's change rolls back whole.
      throw invalid(`networks/${i}`, 'not a valid CIDR (host bits must be zero)');
    }
  }
  return replaceLinks(
    ctx,
    { table: 'partner_networks', owner: 'partner_id', item: 'cidr', cast: 'cidr' },
    partnerId,
    normalized,
  );
}

async function setCertificates(
  ctx: RegistryContext,
  partnerId: string,
  thumbprints: string[],
): Promise<boolean> {
  for (const [i, t] of thumbprints.entries()) {
    const other = await ctx.tx.one(
      sql`select 1 from partner_certificates where thumbprint = ${t} and partner_id <> ${partnerId}`,
    );
    if (other) throw conflict(`certificates/${i}`, 'certificate is already registered to another partner');
  }
  return replaceLinks(
    ctx,
    { table: 'partner_certificates', owner: 'partner_id', item: 'thumbprint' },
    partnerId,
    thumbprints,
  );
}

async function setKeys(
  ctx: RegistryContext,
  table: 'partner_signing_keys' | 'partner_encryption_keys',
  partnerId: string,
  jwks: PartnerJwk[],
  field: string,
): Promise<boolean> {
  const t = sql.ident(table);
  const cur = await ctx.tx.query<{ kid: string; thumbprint: string; partner_id: string }>(
    sql`select kid, thumbprint, partner_id from ${t} where partner_id = ${partnerId} or kid = any(${jwks.map((k) => k.kid)})`,
  );
  const wanted = new Map<string, { jwk: JWK; thumbprint: string }>();
  for (const [i, jwk] of jwks.entries()) {
    if (wanted.has(jwk.kid)) throw invalid(`${field}/${i}/kid`, 'duplicate kid');
    const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
    const existing = cur.find((r) => r.kid === jwk.kid);
    if (existing && existing.partner_id !== partnerId)
      throw conflict(`${field}/${i}/kid`, 'kid is already registered to another partner');
    if (existing && existing.thumbprint !== thumbprint) {
      // A kid names one key forever; a new key needs a new kid, so signatures stay attributable.
      throw conflict(`${field}/${i}`, 'kid is already registered with a different key; use a new kid');
    }
    const { kid, kty, crv, x } = jwk;
    const pub: JWK = table === 'partner_signing_keys' ? { kty, crv, x, kid } : { kty, crv, x, y: jwk.y, kid };
    wanted.set(jwk.kid, { jwk: pub, thumbprint });
  }
  const mine = cur.filter((r) => r.partner_id === partnerId);
  if (
    sameSet(
      mine.map((r) => r.kid),
      [...wanted.keys()],
    )
  )
    return false;
  for (const r of mine)
    if (!wanted.has(r.kid)) await ctx.tx.query(sql`delete from ${t} where kid = ${r.kid}`);
  for (const [kid, w] of wanted) {
    if (mine.some((r) => r.kid === kid)) continue;
    await ctx.tx.query(sql`insert into ${t} (kid, partner_id, public_jwk, thumbprint)
      values (${kid}, ${partnerId}, ${JSON.stringify(w.jwk)}, ${w.thumbprint})`);
  }
  return true;
}
