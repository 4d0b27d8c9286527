import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { DOOR_OUTCOMES } from './door-opener.ts';
import { createResidentService, type ResidentServiceDeps } from './service.ts';

/**
 * The resident API (`/api/v1`, issue 3). Mount it behind the access-token check (src/api-auth/),
 * which sets `req.principal`; every route reads the resident from there and nowhere else.
 *
 *   await app.register(residentApi(deps), { prefix: '/api/v1' });
 */

const Uuid = T.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'our id (UUID)',
});
const DateTime = T.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
  description: 'RFC 3339 date-time',
});
const obj = <P extends Record<string, TSchema>>(props: P, description?: string) =>
  T.Object(props, { additionalProperties: false, ...(description ? { description } : {}) });

const Problem = obj(
  {
    type: T.String(),
    title: T.String(),
    status: T.Integer(),
    detail: T.Optional(T.String()),
    instance: T.Optional(T.String()),
  },
  'RFC 9457 problem details',
);
const problems = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, Problem]));
/** Every route may answer these (no token, a token of another role). */
const COMMON = [401, 403];

const IdParams = obj({ id: Uuid });
const Named = obj({ id: Uuid, name: T.String() });

const AccessPoint = obj(
  {
    id: Uuid,
    kind: T.Union([T.Literal('door'), T.Literal('barrier')]),
    name: T.String(),
    enabled: T.Boolean({ description: 'false while the device or its partner is out of service' }),
  },
  'a door or barrier the resident may use; never the partner or its own device id',
);

const Me = obj({
  id: Uuid,
  fullName: T.String(),
  phone: T.String(),
  apartments: T.Array(
    obj({ id: Uuid, number: T.String(), entrance: Named, building: Named, complex: Named }),
  ),
});

const PlateFormat = T.Union(
  [
    T.Literal('private'),
    T.Literal('taxi'),
    T.Literal('trailer'),
    T.Literal('motorcycle'),
    T.Literal('transit'),
    T.Literal('police'),
    T.Literal('police-motorcycle'),
    T.Literal('diplomatic'),
  ],
  { description: 'GOST R 50577-2018 type, see docs/resident-api.md' },
);
const Vehicle = obj({
  id: Uuid,
  plate: T.String({ description: 'as on the plate (Cyrillic letters)' }),
  format: T.Union([PlateFormat, T.Null()], { description: 'null for a plate provisioned in another format' }),
  createdAt: DateTime,
});
const PlateInput = T.String({
  minLength: 1,
  maxLength: 64,
  description: 'Cyrillic or Latin, spaces allowed',
});
const NewVehicle = obj({ plate: PlateInput });

const GuestPass = obj({
  id: Uuid,
  plate: T.String(),
  validFrom: DateTime,
  validUntil: DateTime,
  revokedAt: T.Union([DateTime, T.Null()]),
  status: T.Union([T.Literal('scheduled'), T.Literal('active'), T.Literal('expired'), T.Literal('revoked')]),
  barriers: T.Array(Named),
  createdAt: DateTime,
});
const NewGuestPass = obj({
  plate: PlateInput,
  validFrom: T.Optional(DateTime),
  validUntil: DateTime,
  barrierIds: T.Array(Uuid, { minItems: 1, maxItems: 50, uniqueItems: true }),
});

const DoorResult = obj({
  commandId: Uuid,
  accessPointId: Uuid,
  status: T.Union(DOOR_OUTCOMES.map((s) => T.Literal(s))),
  at: DateTime,
});

const HistoryEntry = obj({
  id: Uuid,
  at: DateTime,
  action: T.String({ description: 'barrier.decision, door.open.request, door.open.result, registry.…' }),
  result: T.String(),
  accessPoint: T.Union([obj({ id: Uuid, kind: T.String(), name: T.String() }), T.Null()]),
  guestPassId: T.Union([Uuid, T.Null()]),
  reason: T.Optional(T.String()),
  direction: T.Optional(T.Union([T.Literal('entry'), T.Literal('exit')])),
});
const HistoryQuery = obj({
  limit: T.Optional(T.String({ pattern: '^(?:[1-9]|[1-9][0-9]|100)$', description: '1–100, default 50' })),
  cursor: T.Optional(T.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' })),
});
const HistoryPage = obj({ items: T.Array(HistoryEntry), nextCursor: T.Union([T.String(), T.Null()]) });

const DataExport = obj(
  {
    exportedAt: DateTime,
    profile: obj({ id: Uuid, fullName: T.String(), phone: T.String() }),
    apartments: Me.properties.apartments,
    vehicles: T.Array(Vehicle),
    guestPasses: T.Array(GuestPass),
    history: T.Array(HistoryEntry),
    changes: T.Array(HistoryEntry),
  },
  'everything stored about the resident (152-FZ art. 14)',
);

/** Second line of defence behind the token check: only a resident's token reaches a handler. */
export function residentIdOf(req: FastifyRequest): string {
  const p = req.principal;
  if (!p) throw new AppError('invalid-token');
  if (p.kind !== 'resident') throw new AppError('wrong-role', 'this API is for the resident role');
  return p.residentId;
}

/**
 * `Server-Timing` (W3C Server Timing) of a door-open: `partner` is the time spent waiting on the
 * partner (see DoorOpenResult.partnerMs), `total` the time in smart-home from routing to the answer,
 * token check included; both ms on performance.now(). `total − partner` is what smart-home adds.
 */
export function serverTiming(partnerMs: number, totalMs: number): string {
  const ms = (v: number) => (Math.round(v * 100) / 100).toString();
  return `partner;dur=${ms(partnerMs)}, total;dur=${ms(totalMs)}`;
}

const timed = async () => {};

export function residentApi(deps: ResidentServiceDeps) {
  const svc = createResidentService(deps);
  return async (app: FastifyInstance) => {
    app.get('/me', { schema: { response: { 200: Me, ...problems(...COMMON) } } }, async (req) =>
      svc.profile(residentIdOf(req)),
    );

    app.get(
      '/access-points',
      { schema: { response: { 200: obj({ items: T.Array(AccessPoint) }), ...problems(...COMMON) } } },
      async (req) => ({ items: await svc.listAccessPoints(residentIdOf(req)) }),
    );

    app.post<{ Params: Static<typeof IdParams> }>(
      '/access-points/:id/open',
      {
        schema: {
          params: IdParams,
          response: { 200: DoorResult, ...problems(...COMMON, 400, 404, 409) },
        },
        // Fastify times a request from routing (before the token check) only when the route has a
        // logger or an onResponse hook; this one makes `reply.elapsedTime` hold without a logger too.
        onResponse: timed,
      },
      async (req, reply) => {
        const { result, partnerMs } = await svc.openDoor(residentIdOf(req), req.params.id, req.id);
        reply.header('server-timing', serverTiming(partnerMs, reply.elapsedTime));
        return result;
      },
    );

    app.get(
      '/vehicles',
      { schema: { response: { 200: obj({ items: T.Array(Vehicle) }), ...problems(...COMMON) } } },
      async (req) => ({ items: await svc.vehicles(residentIdOf(req)) }),
    );

    app.post<{ Body: Static<typeof NewVehicle> }>(
      '/vehicles',
      { schema: { body: NewVehicle, response: { 201: Vehicle, ...problems(...COMMON, 400, 409) } } },
      async (req, reply) => {
        const v = await svc.addVehicle(residentIdOf(req), req.body.plate, req.id);
        return reply.code(201).send(v);
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      '/vehicles/:id',
      {
        schema: { params: IdParams, response: { 204: T.Null(), ...problems(...COMMON, 400, 404) } },
      },
      async (req, reply) => {
        await svc.removeVehicle(residentIdOf(req), req.params.id, req.id);
        return reply.code(204).send();
      },
    );

    app.get(
      '/guest-passes',
      { schema: { response: { 200: obj({ items: T.Array(GuestPass) }), ...problems(...COMMON) } } },
      async (req) => ({ items: await svc.passes(residentIdOf(req)) }),
    );

    app.post<{ Body: Static<typeof NewGuestPass> }>(
      '/guest-passes',
      {
        schema: { body: NewGuestPass, response: { 201: GuestPass, ...problems(...COMMON, 400, 404) } },
      },
      async (req, reply) => {
        const p = await svc.createPass(residentIdOf(req), req.body, req.id);
        return reply.code(201).send(p);
      },
    );

    app.post<{ Params: Static<typeof IdParams> }>(
      '/guest-passes/:id/revoke',
      { schema: { params: IdParams, response: { 200: GuestPass, ...problems(...COMMON, 400, 404) } } },
      async (req) => svc.revokePass(residentIdOf(req), req.params.id, req.id),
    );

    app.get<{ Querystring: Static<typeof HistoryQuery> }>(
      '/history',
      {
        schema: { querystring: HistoryQuery, response: { 200: HistoryPage, ...problems(...COMMON, 400) } },
      },
      async (req) =>
        svc.history(residentIdOf(req), {
          limit: req.query.limit ? Number(req.query.limit) : 50,
          cursor: req.query.cursor,
        }),
    );

    app.get(
      '/data-export',
      { schema: { response: { 200: DataExport, ...problems(...COMMON) } } },
      async (req, reply) => {
        const doc = await svc.dataExport(residentIdOf(req), req.id);
        // Personal data: never cached by a proxy or the browser.
        reply.header('cache-control', 'no-store');
        reply.header('content-disposition', 'attachment; filename="smart-home-data-export.json"');
        return doc;
      },
    );
  };
}
