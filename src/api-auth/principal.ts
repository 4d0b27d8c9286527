/**
 * Who is calling the public API (`/api/v1` for residents, `/admin/v1` for operators), as established
 * by the access-token check (src/api-auth/). Route handlers read `req.principal` and never the token.
 *
 * Shared contract between the authorization server (tokens it issues), the resource-server check
 * (which sets `req.principal`) and the API routes (which authorise every object against it).
 */
export type Principal =
  | {
      kind: 'resident';
      /** residents.id */
      residentId: string;
      /** The token's `sub` (equals residentId for tokens of the embedded authorization server). */
      subject: string;
      scopes: ReadonlySet<string>;
      clientId: string | undefined;
    }
  | {
      kind: 'operator';
      /** operators.id for the embedded authorization server; the IdP's `sub` for an external one. */
      operatorId: string;
      subject: string;
      scopes: ReadonlySet<string>;
      clientId: string | undefined;
    };

/** Audience of every access token for the public API (resident and operator routes). */
export const API_AUDIENCE = 'urn:smart-home:api';

/** The claim naming the caller's role in access tokens of the embedded authorization server. */
export const ROLE_CLAIM = 'role';
/** The grant an access token of the embedded AS belongs to (checked against revoked grants on every request). */
export const GRANT_CLAIM = 'gid';
export type Role = 'resident' | 'operator';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the access-token check on `/api/v1` and `/admin/v1`; absent elsewhere. */
    principal?: Principal;
  }
}
