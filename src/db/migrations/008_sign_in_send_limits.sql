-- Limits on sending one-time sign-in codes (issue 3): every code is an SMS someone pays for and a
-- message a person receives, so sends are counted per phone number and per client address, in the
-- database, so every instance counts the same sends. One row per subject ("phone:<blind index>",
-- "address:<blind index>"); a fixed window that restarts on the first send after it ends.
create table sign_in_send_limits (
  subject text primary key,
  window_started_at timestamptz not null,
  sends integer not null,
  last_sent_at timestamptz not null
);
create index sign_in_send_limits_window on sign_in_send_limits (window_started_at);
