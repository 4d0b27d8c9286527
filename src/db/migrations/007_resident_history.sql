-- The resident API reads a resident's own journal entries (GET /api/v1/history, data-export): entries
-- whose subject is the resident or one of their passes, newest first, by cursor on seq.
create index journal_subject on journal (subject_type, subject_id, seq);
