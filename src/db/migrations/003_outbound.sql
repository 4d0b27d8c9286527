-- The outbound partner channel (contract §7): how smart-home calls a partner that receives commands.
-- base_url (001) says where; these say how to trust the partner's server and how to get its token.

-- PEM of the CA(s) the partner's server certificate must chain to: pinned per partner, nothing else
-- is trusted on that connection (contract §1).
alter table partners add column server_ca_pem text;
-- our client_id at the partner's authorization server (OAuth2 client credentials, RFC 6749 §4.4)
alter table partners add column outbound_client_id text;
-- the partner's token endpoint; null means `{base_url}/oauth/token`
alter table partners add column token_endpoint text;

-- the three go together, and only for a partner with a base URL
alter table partners add constraint partners_outbound_complete check (
  (server_ca_pem is null and outbound_client_id is null and token_endpoint is null)
  or (server_ca_pem is not null and outbound_client_id is not null and base_url is not null)
);
