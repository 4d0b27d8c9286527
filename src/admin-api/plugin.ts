import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import * as health from '../device-health/queries.ts';
import {
  AlertQuery,
  AlertResolve,
  Alert as AlertSchema,
  DeviceHealthFilters,
} from '../device-health/schemas.ts';
import { AppError } from '../errors.ts';
import { appendJournal } from '../journal/journal.ts';
import * as registry from '../registry/service/index.ts';
import { searchJournal } from './journal-search.ts';
import * as q from './queries.ts';
import * as s from './schemas.ts';

export interface AdminApiDeps {
  db: Db;
  cipher: FieldCipher;
  /**
   * Called after a committed change to partners or devices, so this instance serves the new partner
   * directory at once (`App.reloadDirectory`); other instances pick it up on their periodic refresh.
   */
  onDirectoryChange?: () => Promise<void>;
}

const ERR = { 400: s.Problem, 401: s.Problem, 403: s.Problem, 404: s.Problem, 409: s.Problem };

/** RFC 9457 problems of the service layer's refusals; the detail names the field, never its value. */
function problemOf(err: unknown): unknown {
  if (err instanceof registry.RegistryError) {
    const where = err.field === undefined ? '' : `body/${err.field}: `;
    if (err.kind === 'not-found') return new AppError('not-found', err.message);
    if (err.kind === 'conflict') return new AppError('registry-conflict', `${where}${err.message}`);
    return new AppError('invalid-request', `${where}${err.message}`);
  }
  // A constraint the service did not foresee still answers 409, never a half-change (the transaction rolled back).
  const code = (err as { code?: unknown })?.code;
  if (code === '23503')
    return new AppError('registry-conflict', 'still referenced by other registry objects');
  if (code === '23505') return new AppError('registry-conflict', 'an object with these keys already exists');
  return err;
}

/**
 * The operator API, registered under `/admin/v1` behind the access-token check of src/api-auth/
 * (`apiAuth({ verifier, requiredRole: 'operator' })`), which sets `req.principal`. As a second line of
 * defence every request without an operator principal is refused here too. Every change runs through
 * the registry service layer in one transaction with its journal entry (actor = the operator, with the
 * request id).
 */
export function adminApi(deps: AdminApiDeps) {
  return async (app: FastifyInstance) => {
    app.addHook('preValidation', async (req) => {
      const p = req.principal;
      if (!p) throw new AppError('invalid-token');
      if (p.kind !== 'operator') throw new AppError('wrong-role', 'this API is for the operator role');
    });

    const operator = (req: FastifyRequest) => {
      const p = req.principal;
      if (p?.kind !== 'operator') throw new AppError('wrong-role');
      return p.operatorId;
    };

    /** One change in one transaction; the directory reloads after commit when partners or devices changed. */
    async function change<T>(
      req: FastifyRequest,
      fn: (ctx: registry.RegistryContext) => Promise<T>,
      directory = false,
    ): Promise<T> {
      const actor: registry.RegistryActor = { type: 'operator', id: operator(req), requestId: req.id };
      let out: T;
      try {
        out = await deps.db.transaction((tx) => fn({ tx, cipher: deps.cipher, actor }));
      } catch (err) {
        throw problemOf(err);
      }
      if (directory) await deps.onDirectoryChange?.();
      return out;
    }
    const found = <T>(v: T | undefined): T => {
      if (v === undefined) throw new AppError('not-found');
      return v;
    };

    type Route<
      P extends TSchema | undefined,
      Q extends TSchema | undefined,
      B extends TSchema | undefined,
    > = {
      params?: P;
      querystring?: Q;
      body?: B;
      response: TSchema;
      status?: 200 | 201;
      summary: string;
      tag: string;
    };
    type In<S> = S extends TSchema ? Static<S> : undefined;
    /** Registers one route with its full schema: params, query, body, success and problem responses. */
    function route<
      P extends TSchema | undefined,
      Q extends TSchema | undefined,
      B extends TSchema | undefined,
    >(
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      r: Route<P, Q, B>,
      handler: (req: FastifyRequest & { params: In<P>; query: In<Q>; body: In<B> }) => Promise<unknown>,
    ) {
      const status = r.status ?? 200;
      app.route({
        method,
        url,
        schema: {
          summary: r.summary,
          tags: [r.tag],
          security: [{ bearer: [] }],
          ...(r.params ? { params: r.params } : {}),
          ...(r.querystring ? { querystring: r.querystring } : {}),
          ...(r.body ? { body: r.body } : {}),
          response: { [status]: r.response, ...ERR },
        },
        handler: async (req, reply) => {
          const out = await handler(req as never);
          reply.code(status);
          return out;
        },
      });
    }

    // Complexes
    route(
      'GET',
      '/complexes',
      {
        querystring: s.ListQuery({}),
        response: s.Page(s.Complex),
        summary: 'List complexes',
        tag: 'complexes',
      },
      async (req) => q.listComplexes(deps.db, req.query),
    );
    route(
      'POST',
      '/complexes',
      {
        body: s.ComplexCreate,
        response: s.Complex,
        status: 201,
        summary: 'Create a complex',
        tag: 'complexes',
      },
      async (req) => {
        const id = await change(req, (ctx) => registry.createComplex(ctx, req.body));
        return found(await q.getComplex(deps.db, id));
      },
    );
    route(
      'GET',
      '/complexes/:id',
      { params: s.IdParams, response: s.Complex, summary: 'Get a complex', tag: 'complexes' },
      async (req) => found(await q.getComplex(deps.db, req.params.id)),
    );
    route(
      'PATCH',
      '/complexes/:id',
      {
        params: s.IdParams,
        body: s.NamedPatch,
        response: s.Complex,
        summary: 'Rename a complex',
        tag: 'complexes',
      },
      async (req) => {
        await change(req, (ctx) => registry.updateComplex(ctx, req.params.id, req.body));
        return found(await q.getComplex(deps.db, req.params.id));
      },
    );
    route(
      'DELETE',
      '/complexes/:id',
      {
        params: s.IdParams,
        response: s.Deleted,
        summary: 'Delete a complex (409 while buildings, devices or perimeters refer to it)',
        tag: 'complexes',
      },
      async (req) => {
        await change(req, (ctx) => registry.deleteComplex(ctx, req.params.id));
        return { id: req.params.id, deleted: true as const };
      },
    );

    // Buildings and entrances
    for (const level of [
      {
        object: 'building' as const,
        path: '/buildings',
        tag: 'buildings',
        schema: s.Building,
        create: s.BuildingCreate,
        parentKey: 'complexId' as const,
        list: (query: q.PageQuery & Record<string, string | undefined>) => q.listBuildings(deps.db, query),
        get: (id: string) => q.getBuilding(deps.db, id),
      },
      {
        object: 'entrance' as const,
        path: '/entrances',
        tag: 'entrances',
        schema: s.Entrance,
        create: s.EntranceCreate,
        parentKey: 'buildingId' as const,
        list: (query: q.PageQuery & Record<string, string | undefined>) => q.listEntrances(deps.db, query),
        get: (id: string) => q.getEntrance(deps.db, id),
      },
    ]) {
      route(
        'GET',
        level.path,
        {
          querystring: s.ListQuery({
            [level.parentKey]: { ...s.Uuid, description: 'only those of this parent' },
          }),
          response: s.Page(level.schema),
          summary: `List ${level.tag}`,
          tag: level.tag,
        },
        async (req) => level.list(req.query as Record<string, string | undefined>),
      );
      route(
        'POST',
        level.path,
        {
          body: level.create,
          response: level.schema,
          status: 201,
          summary: `Create a ${level.object}`,
          tag: level.tag,
        },
        async (req) => {
          const b = req.body as { code: string; name: string } & Record<string, string>;
          const parentId = b[level.parentKey]!;
          const id = await change(req, (ctx) =>
            registry.createNamed(ctx, level.object, parentId, { code: b.code, name: b.name }),
          );
          return found(await level.get(id));
        },
      );
      route(
        'GET',
        `${level.path}/:id`,
        { params: s.IdParams, response: level.schema, summary: `Get a ${level.object}`, tag: level.tag },
        async (req) => found(await level.get(req.params.id)),
      );
      route(
        'PATCH',
        `${level.path}/:id`,
        {
          params: s.IdParams,
          body: s.NamedPatch,
          response: level.schema,
          summary: `Rename a ${level.object}`,
          tag: level.tag,
        },
        async (req) => {
          await change(req, (ctx) => registry.updateNamed(ctx, level.object, req.params.id, req.body));
          return found(await level.get(req.params.id));
        },
      );
      route(
        'DELETE',
        `${level.path}/:id`,
        {
          params: s.IdParams,
          response: s.Deleted,
          summary: `Delete a ${level.object} (409 while anything refers to it)`,
          tag: level.tag,
        },
        async (req) => {
          await change(req, (ctx) => registry.deleteNamed(ctx, level.object, req.params.id));
          return { id: req.params.id, deleted: true as const };
        },
      );
    }

    // Apartments
    route(
      'GET',
      '/apartments',
      {
        querystring: s.ListQuery({ entranceId: s.Uuid, residentId: s.Uuid }),
        response: s.Page(s.Apartment),
        summary: 'List apartments',
        tag: 'apartments',
      },
      async (req) => q.listApartments(deps.db, req.query),
    );
    route(
      'POST',
      '/apartments',
      {
        body: s.ApartmentCreate,
        response: s.Apartment,
        status: 201,
        summary: 'Create an apartment',
        tag: 'apartments',
      },
      async (req) => {
        const id = await change(req, (ctx) => registry.createApartment(ctx, req.body));
        return found(await q.getApartment(deps.db, id));
      },
    );
    route(
      'GET',
      '/apartments/:id',
      { params: s.IdParams, response: s.Apartment, summary: 'Get an apartment', tag: 'apartments' },
      async (req) => found(await q.getApartment(deps.db, req.params.id)),
    );
    route(
      'PATCH',
      '/apartments/:id',
      {
        params: s.IdParams,
        body: s.ApartmentPatch,
        response: s.Apartment,
        summary: 'Renumber an apartment',
        tag: 'apartments',
      },
      async (req) => {
        await change(req, (ctx) => registry.updateApartment(ctx, req.params.id, req.body));
        return found(await q.getApartment(deps.db, req.params.id));
      },
    );
    route(
      'DELETE',
      '/apartments/:id',
      {
        params: s.IdParams,
        response: s.Deleted,
        summary: 'Delete an apartment (409 while residents live there)',
        tag: 'apartments',
      },
      async (req) => {
        await change(req, (ctx) => registry.deleteApartment(ctx, req.params.id));
        return { id: req.params.id, deleted: true as const };
      },
    );

    // Residents
    route(
      'GET',
      '/residents',
      {
        querystring: s.ListQuery({ apartmentId: s.Uuid }),
        response: s.Page(s.Resident),
        summary: 'List residents (no personal fields)',
        tag: 'residents',
      },
      async (req) => q.listResidents(deps.db, req.query),
    );
    route(
      'POST',
      '/residents',
      {
        body: s.ResidentCreate,
        response: s.Resident,
        status: 201,
        summary: 'Create a resident',
        tag: 'residents',
      },
      async (req) => {
        const id = await change(req, (ctx) => registry.createResident(ctx, req.body));
        return found(await q.getResident(deps.db, id));
      },
    );
    route(
      'GET',
      '/residents/:id',
      {
        params: s.IdParams,
        response: s.ResidentDetail,
        summary: 'Get a resident with name, phone and plates decrypted (journaled)',
        tag: 'residents',
      },
      async (req) => {
        const base = found(await q.getResident(deps.db, req.params.id));
        const personal = found(await registry.residentDetail(deps.db, deps.cipher, req.params.id));
        // Who saw whose personal data, and when (152-FZ): journaled before the answer leaves.
        await appendJournal(deps.db, {
          actorType: 'operator',
          actorId: operator(req),
          action: 'registry.resident.view',
          subjectType: 'resident',
          subjectId: req.params.id,
          result: 'ok',
          requestId: req.id,
        });
        return { ...base, ...personal };
      },
    );
    route(
      'GET',
      '/residents/:id/apartments',
      {
        params: s.IdParams,
        querystring: s.ListQuery({}),
        response: s.Page(s.Apartment),
        summary: "A resident's apartments",
        tag: 'residents',
      },
      async (req) => {
        found(await q.getResident(deps.db, req.params.id));
        return q.listApartments(deps.db, { ...req.query, residentId: req.params.id });
      },
    );
    route(
      'PATCH',
      '/residents/:id',
      {
        params: s.IdParams,
        body: s.ResidentPatch,
        response: s.Resident,
        summary: 'Change a resident (lists replace the current ones)',
        tag: 'residents',
      },
      async (req) => {
        await change(req, (ctx) => registry.updateResident(ctx, req.params.id, req.body));
        return found(await q.getResident(deps.db, req.params.id));
      },
    );
    route(
      'DELETE',
      '/residents/:id',
      {
        params: s.IdParams,
        response: s.Deleted,
        summary: 'Delete a resident with their vehicles and guest passes (erasure)',
        tag: 'residents',
      },
      async (req) => {
        await change(req, (ctx) => registry.deleteResident(ctx, req.params.id));
        return { id: req.params.id, deleted: true as const };
      },
    );

    // Devices
    route(
      'GET',
      '/devices',
      {
        querystring: s.ListQuery({ partnerId: s.Uuid, complexId: s.Uuid, ...DeviceHealthFilters }),
        response: s.Page(s.Device),
        summary: 'List devices with their health: state, last seen, clock skew, open alerts',
        tag: 'devices',
      },
      async (req) => q.listDevices(deps.db, req.query),
    );
    route(
      'POST',
      '/devices',
      { body: s.DeviceCreate, response: s.Device, status: 201, summary: 'Create a device', tag: 'devices' },
      async (req) => {
        const b = req.body;
        const id = await change(
          req,
          (ctx) =>
            registry.createDevice(ctx, {
              ...b,
              buildingId: b.buildingId ?? null,
              entranceId: b.entranceId ?? null,
              enabled: b.enabled ?? true,
            }),
          true,
        );
        return found(await q.getDevice(deps.db, id));
      },
    );
    route(
      'GET',
      '/devices/:id',
      {
        params: s.IdParams,
        response: s.DeviceDetail,
        summary: 'Get a device with its health, recent status history and open alerts',
        tag: 'devices',
      },
      async (req) => {
        const d = found(await q.getDevice(deps.db, req.params.id));
        const [statusHistory, alerts] = await Promise.all([
          health.recentHistory(deps.db, d.id),
          health.openAlertsOf(deps.db, d.id),
        ]);
        return { ...d, statusHistory, alerts };
      },
    );
    route(
      'PATCH',
      '/devices/:id',
      {
        params: s.IdParams,
        body: s.DevicePatch,
        response: s.Device,
        summary: 'Change a device',
        tag: 'devices',
      },
      async (req) => {
        await change(req, (ctx) => registry.updateDevice(ctx, req.params.id, req.body), true);
        return found(await q.getDevice(deps.db, req.params.id));
      },
    );
    route(
      'DELETE',
      '/devices/:id',
      {
        params: s.IdParams,
        response: s.Deleted,
        summary: 'Delete a device (409 while guest passes name it)',
        tag: 'devices',
      },
      async (req) => {
        await change(req, (ctx) => registry.deleteDevice(ctx, req.params.id), true);
        return { id: req.params.id, deleted: true as const };
      },
    );

    // Device alerts (issue 5): tamper, door forced, door held open
    route(
      'GET',
      '/alerts',
      {
        querystring: AlertQuery,
        response: s.Page(AlertSchema),
        summary: 'List device alerts (open by default), newest first',
        tag: 'alerts',
      },
      async (req) => health.listAlerts(deps.db, req.query),
    );
    route(
      'POST',
      '/alerts/:id/resolve',
      {
        params: s.IdParams,
        body: AlertResolve,
        response: AlertSchema,
        summary: 'Resolve an open alert (journaled; 409 when already resolved)',
        tag: 'alerts',
      },
      async (req) => {
        const by = { operatorId: operator(req), requestId: req.id };
        await deps.db.transaction((tx) => health.resolveAlert(tx, req.params.id, by, req.body.note));
        return found(await health.getAlert(deps.db, req.params.id));
      },
    );

    // Partners
    const outbound = (o: Static<typeof s.PartnerCreate>['outbound']) =>
      o ? { serverCa: o.serverCa, clientId: o.clientId, tokenEndpoint: o.tokenEndpoint ?? null } : null;
    route(
      'GET',
      '/partners',
      {
        querystring: s.ListQuery({}),
        response: s.Page(s.Partner),
        summary: 'List partners',
        tag: 'partners',
      },
      async (req) => q.listPartners(deps.db, req.query),
    );
    route(
      'POST',
      '/partners',
      {
        body: s.PartnerCreate,
        response: s.Partner,
        status: 201,
        summary: 'Onboard a partner (its plate-key secret is created here and never shown)',
        tag: 'partners',
      },
      async (req) => {
        const b = req.body;
        const id = await change(
          req,
          (ctx) =>
            registry.createPartner(ctx, {
              ...b,
              enabled: b.enabled ?? true,
              baseUrl: b.baseUrl ?? null,
              outbound: outbound(b.outbound),
              logKey: b.logKey ?? null,
              witnessKey: b.witnessKey ?? null,
            }),
          true,
        );
        return found(await q.getPartner(deps.db, id));
      },
    );
    route(
      'GET',
      '/partners/:id',
      {
        params: s.IdParams,
        response: s.Partner,
        summary: 'Get a partner (public material only)',
        tag: 'partners',
      },
      async (req) => found(await q.getPartner(deps.db, req.params.id)),
    );
    route(
      'PATCH',
      '/partners/:id',
      {
        params: s.IdParams,
        body: s.PartnerPatch,
        response: s.Partner,
        summary: 'Change a partner (lists replace the current ones)',
        tag: 'partners',
      },
      async (req) => {
        const { outbound: o, ...rest } = req.body;
        const patch: registry.PartnerPatch = {
          ...rest,
          ...(o === undefined ? {} : { outbound: outbound(o) }),
        };
        await change(req, (ctx) => registry.updatePartner(ctx, req.params.id, patch), true);
        return found(await q.getPartner(deps.db, req.params.id));
      },
    );
    route(
      'DELETE',
      '/partners/:id',
      {
        params: s.IdParams,
        response: s.Deleted,
        summary: 'Delete a partner (409 while it has devices or recent decisions)',
        tag: 'partners',
      },
      async (req) => {
        await change(req, (ctx) => registry.deletePartner(ctx, req.params.id), true);
        return { id: req.params.id, deleted: true as const };
      },
    );

    // Journal
    route(
      'GET',
      '/journal',
      {
        querystring: s.JournalQuery,
        response: s.Page(s.JournalEntry),
        summary: 'Search the journal (by time then id; cursor pagination)',
        tag: 'journal',
      },
      async (req) => searchJournal(deps.db, req.query),
    );
  };
}
