-- Pipeline-owned: overage billing. The seed's tables are not changed; these three tables
-- make billing exactly-once and invoice numbers gapless, enforced by the database.

-- One row per (org, calendar month in the org's time zone) once it is billed. The primary key is the
-- exactly-once guarantee: a second biller's batch cannot insert it, so it cannot create an invoice.
-- invoice_id is NULL when there was nothing to bill; the measured usage is kept for audit.
CREATE TABLE billing_periods (
    org_id TEXT NOT NULL REFERENCES organizations(id),
    period TEXT NOT NULL,                      -- 'YYYY-MM'
    invoice_id TEXT UNIQUE REFERENCES invoices(id),
    period_start INTEGER NOT NULL,             -- ms since epoch, local midnight of the 1st
    period_end INTEGER NOT NULL,               -- ms, exclusive
    storage_bytes INTEGER NOT NULL,
    activated_projects INTEGER NOT NULL,
    notification_count INTEGER NOT NULL,
    notification_cost REAL NOT NULL,           -- rupees, 2 places: the cost of the rows this close billed
    event_id TEXT NOT NULL,                    -- the inbox event that closed it
    closed_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, period)
);

-- Invoice numbers: a consecutive series per branch and Indian financial year (April-March). The
-- biller asserts max(seq) = last inside its batch and inserts last + 1: no gaps, no duplicates.
CREATE TABLE invoice_numbers (
    branch_id TEXT NOT NULL REFERENCES branches(id),
    fy TEXT NOT NULL,                          -- '2026-27'
    seq INTEGER NOT NULL CHECK (seq >= 1),
    invoice_id TEXT NOT NULL UNIQUE REFERENCES invoices(id),
    number TEXT NOT NULL CHECK (length(number) <= 16),  -- GST rule 46: at most 16 characters
    issued_at INTEGER NOT NULL,
    PRIMARY KEY (branch_id, fy, seq),
    UNIQUE (branch_id, number)
);

-- Which invoice (or invoice-less close) billed each notification: a notification is billed once.
CREATE TABLE billed_notifications (
    notification_id TEXT PRIMARY KEY REFERENCES notifications(id),
    org_id TEXT NOT NULL,
    period TEXT NOT NULL,
    invoice_id TEXT REFERENCES invoices(id)
);
CREATE INDEX idx_billed_notifications_invoice_id ON billed_notifications (invoice_id);

-- The three are append-only history: a number, a close or a billing is never rewritten.
CREATE TRIGGER billing_periods_no_update BEFORE UPDATE ON billing_periods
BEGIN
    SELECT RAISE(ABORT, 'append_only: billing_periods rows cannot be updated');
END;
CREATE TRIGGER billing_periods_no_delete BEFORE DELETE ON billing_periods
BEGIN
    SELECT RAISE(ABORT, 'append_only: billing_periods rows cannot be deleted');
END;
CREATE TRIGGER invoice_numbers_no_update BEFORE UPDATE ON invoice_numbers
BEGIN
    SELECT RAISE(ABORT, 'append_only: invoice_numbers rows cannot be updated');
END;
CREATE TRIGGER invoice_numbers_no_delete BEFORE DELETE ON invoice_numbers
BEGIN
    SELECT RAISE(ABORT, 'append_only: invoice_numbers rows cannot be deleted');
END;
CREATE TRIGGER billed_notifications_no_update BEFORE UPDATE ON billed_notifications
BEGIN
    SELECT RAISE(ABORT, 'append_only: billed_notifications rows cannot be updated');
END;
CREATE TRIGGER billed_notifications_no_delete BEFORE DELETE ON billed_notifications
BEGIN
    SELECT RAISE(ABORT, 'append_only: billed_notifications rows cannot be deleted');
END;
