-- Immutable history and in-batch assertions (DESIGN.md, "D1 facts").

-- transactions and audit_logs are append-only: corrections are new rows.
CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions
BEGIN
    SELECT RAISE(ABORT, 'append_only: transactions rows cannot be updated');
END;
CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
BEGIN
    SELECT RAISE(ABORT, 'append_only: transactions rows cannot be deleted');
END;
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'append_only: audit_logs rows cannot be updated');
END;
CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'append_only: audit_logs rows cannot be deleted');
END;

-- A batch asserts what it read is still true: `INSERT INTO _assert(ok, code) SELECT count(*), 'version'
-- FROM invoices WHERE id = ? AND version = ?`. ok = 0 aborts the whole batch (D1 has no BEGIN/COMMIT).
CREATE VIEW _assert AS SELECT 1 AS ok, 'version' AS code;
CREATE TRIGGER _assert_version INSTEAD OF INSERT ON _assert WHEN NEW.ok = 0 AND NEW.code = 'version'
BEGIN
    SELECT RAISE(ABORT, 'version_conflict');
END;
CREATE TRIGGER _assert_inbox INSTEAD OF INSERT ON _assert WHEN NEW.ok = 0 AND NEW.code = 'inbox'
BEGIN
    SELECT RAISE(ABORT, 'already_applied');
END;
