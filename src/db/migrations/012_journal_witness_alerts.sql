-- The operator's list of witnessing alerts (GET /admin/v1/journal/witness, src/journal/witness/): the
-- newest `journal.witness.alert` entries without walking the whole journal backwards.
create index journal_witness_alerts on journal (seq) where action = 'journal.witness.alert';
