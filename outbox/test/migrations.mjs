// Applies the pipeline's migrations (../../migrations/NNNN_name.sql) to a D1 database exactly as the files
// are, recording them in d1_migrations the way wrangler and the Python migrator (store/migrate.py) do:
// each file is ONE batch together with its d1_migrations row, so it is applied entirely or not at all.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

// Byte for byte store/migrate.py's CREATE_MIGRATIONS_TABLE (wrangler's table).
export const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS d1_migrations(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)`;

const NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;

/** The migration file names in the order they apply; a misnamed .sql file is an error, not skipped. */
export function migrationFiles(dir) {
  const files = readdirSync(dir).filter((f) => f.endsWith(".sql")).sort();
  const bad = files.filter((f) => !NAME.test(f));
  if (bad.length) throw new Error(`migration files must be named NNNN_snake_name.sql: ${bad.join(", ")}`);
  if (new Set(files.map((f) => f.slice(0, 4))).size !== files.length) throw new Error(`two migrations share a number in ${dir}`);
  return files;
}

/**
 * Splits SQL into statements at top-level semicolons. Semicolons inside strings, quoted identifiers and
 * comments do not count, nor do those inside a trigger body: a CREATE TRIGGER statement ends at the `;`
 * after the END that closes its BEGIN (CASE ... END inside the body is counted, so it does not end it).
 * Statements that hold only comments are dropped; the rest are returned as written (trimmed).
 */
export function splitStatements(sql) {
  const statements = [];
  let words = []; // the statement's first words, upper-cased (to recognise CREATE [TEMP] TRIGGER)
  let inTrigger = false;
  let inBody = false;
  let caseDepth = 0;
  let bodyDone = false;
  let hasCode = false;
  let codeStart = 0;
  const mark = (pos) => {
    if (!hasCode) codeStart = pos;
    hasCode = true;
  };

  const finish = (end) => {
    if (hasCode) statements.push(sql.slice(codeStart, end).trim());
    words = [];
    inTrigger = inBody = bodyDone = hasCode = false;
    caseDepth = 0;
  };
  const word = (w) => {
    const upper = w.toUpperCase();
    if (words.length < 4) {
      words.push(upper);
      const [a, b, c] = words;
      if (a === "CREATE" && (b === "TRIGGER" || ((b === "TEMP" || b === "TEMPORARY") && c === "TRIGGER"))) inTrigger = true;
    }
    if (!inTrigger) return;
    if (!inBody) {
      if (upper === "BEGIN") inBody = true;
    } else if (!bodyDone) {
      if (upper === "CASE") caseDepth += 1;
      else if (upper === "END") {
        if (caseDepth > 0) caseDepth -= 1;
        else bodyDone = true;
      }
    }
  };

  let i = 0;
  while (i < sql.length) {
    const ch = sql[i];
    const next = sql[i + 1];
    if (ch === "-" && next === "-") {
      const nl = sql.indexOf("\n", i);
      i = nl === -1 ? sql.length : nl + 1;
    } else if (ch === "/" && next === "*") {
      const close = sql.indexOf("*/", i + 2);
      if (close === -1) throw new Error("unterminated /* comment in migration");
      i = close + 2;
    } else if (ch === "'" || ch === '"' || ch === "`" || ch === "[") {
      const closer = ch === "[" ? "]" : ch;
      let j = i + 1;
      for (;;) {
        j = sql.indexOf(closer, j);
        if (j === -1) throw new Error(`unterminated ${ch} quote in migration`);
        if (closer !== "]" && sql[j + 1] === closer) {
          j += 2; // doubled quote: an escaped quote inside
          continue;
        }
        break;
      }
      mark(i);
      i = j + 1;
    } else if (/[A-Za-z_]/.test(ch)) {
      let j = i + 1;
      while (j < sql.length && /[A-Za-z0-9_$]/.test(sql[j])) j += 1;
      mark(i);
      word(sql.slice(i, j));
      i = j;
    } else if (ch === ";") {
      if (!inTrigger || bodyDone) finish(i + 1);
      i += 1;
    } else {
      if (!/\s/.test(ch)) mark(i);
      i += 1;
    }
  }
  if (hasCode) {
    if (inTrigger && !bodyDone) throw new Error("unterminated CREATE TRIGGER (no END;) at the end of a migration");
    statements.push(sql.slice(codeStart).trim());
  }
  return statements;
}

/** Applies every migration in `dir` not yet recorded in d1_migrations; returns the names applied. */
export async function applyMigrations(db, dir) {
  await db.prepare(CREATE_MIGRATIONS_TABLE).run();
  const { results } = await db.prepare("SELECT name FROM d1_migrations ORDER BY id").all();
  const applied = new Set(results.map((r) => r.name));
  const done = [];
  for (const name of migrationFiles(dir)) {
    if (applied.has(name)) continue;
    const statements = splitStatements(readFileSync(join(dir, name), "utf8")).map((s) => db.prepare(s));
    statements.push(db.prepare("INSERT INTO d1_migrations (name) VALUES (?)").bind(name));
    try {
      await db.batch(statements);
    } catch (error) {
      throw new Error(`migration ${name} failed: ${error?.message ?? error}`, { cause: error });
    }
    done.push(name);
  }
  return done;
}
