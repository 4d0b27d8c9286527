-- External identity provider mode (issue 3, src/api-auth/): a resident's subject at the external IdP,
-- i.e. the `sub` of the access tokens it issues for them, set by the operator in the provisioning
-- document (`externalSubject`). An opaque IdP account id, not a name or a phone; null when unlinked.
alter table residents add column external_subject text;
create unique index residents_external_subject on residents (external_subject)
  where external_subject is not null;
