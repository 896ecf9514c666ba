/**
 * What `kvsz demo` creates and does: the source and destination tables, the
 * first rows, the scripted source transactions, and the kvsz config mapping
 * them (employees as history, orders as clone into a table with `sid`, the
 * audit log as append).
 */
import type { LocalCluster } from "../pg/local_cluster.ts";

/** Source database name. */
export const SOURCE_DB = "app";
/** Destination database name. */
export const DEST_DB = "warehouse";
/** Source id of the demo's only source. */
export const SID = "1";

/** One mapped table: how it looks on both sides and how to read it for display. */
export interface DemoTable {
  name: string;
  mode: "clone" | "append" | "history";
  /** What the mode does, for the comparison heading. */
  note: string;
  sourceDdl: string;
  /** Statements creating the target (and its indexes). */
  destDdl: string;
  /** Columns shown for the source side, ordered by key. */
  sourceQuery: string;
  /** Columns shown for the destination side. */
  destQuery: string;
}

/** The three tables, in display order. */
export const TABLES: DemoTable[] = [
  {
    name: "employees",
    mode: "history",
    note: "history: every version, valid from kvsz_start to kvsz_end",
    sourceDdl: `CREATE TABLE employees (
      id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, salary int NOT NULL)`,
    destDdl: `CREATE TABLE employees (
      sid text NOT NULL, id int NOT NULL, first_name text, last_name text, salary int,
      kvsz_start timestamptz NOT NULL, kvsz_end timestamptz NOT NULL, kvsz_deleted boolean NOT NULL);
    CREATE UNIQUE INDEX ON employees (sid, id) WHERE kvsz_end = '9999-01-01';
    CREATE INDEX ON employees (sid, id, kvsz_start)`,
    sourceQuery: `SELECT id, first_name, last_name, salary FROM employees ORDER BY id`,
    destQuery: `SELECT sid, id, first_name, last_name, salary, kvsz_start::text, kvsz_end::text,
      kvsz_deleted FROM employees ORDER BY id, kvsz_start`,
  },
  {
    name: "orders",
    mode: "clone",
    note: "clone: an identical copy, plus the source id in sid",
    sourceDdl: `CREATE TABLE orders (
      id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL, status text NOT NULL)`,
    destDdl: `CREATE TABLE orders (
      sid text NOT NULL, id int NOT NULL, customer text, amount numeric(10,2), status text,
      PRIMARY KEY (sid, id))`,
    sourceQuery: `SELECT id, customer, amount, status FROM orders ORDER BY id`,
    destQuery: `SELECT sid, id, customer, amount, status FROM orders ORDER BY sid, id`,
  },
  {
    name: "audit_log",
    mode: "append",
    note: "append: DELETE and TRUNCATE are ignored, rows are kept",
    sourceDdl: `CREATE TABLE audit_log (
      id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), event text NOT NULL)`,
    destDdl: `CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz, event text)`,
    sourceQuery: `SELECT id, at::text, event FROM audit_log ORDER BY id`,
    destQuery: `SELECT id, at::text, event FROM audit_log ORDER BY id`,
  },
];

/** Rows the source has before kvsz starts (copied by the initial sync). */
export const SEED_SQL = [
  `INSERT INTO employees VALUES (2, 'Jane', 'Smith', 1500), (3, 'Ada', 'Lovelace', 1800)`,
  `INSERT INTO orders VALUES (1, 'Jane Smith', 25.00, 'new'), (2, 'Acme Corp', 120.50, 'new')`,
  `INSERT INTO audit_log (event) VALUES ('app installed'), ('orders 1 and 2 placed')`,
];

/** One scripted source transaction. */
export interface DemoStep {
  /** The statement kind and table, e.g. `UPDATE employees`. */
  op: string;
  /** What happens, for people. */
  what: string;
  /** Statements run in one source transaction. */
  sql: string[];
}

const audit = (event: string) => `INSERT INTO audit_log (event) VALUES ('${event}')`;

/** The scripted changes, one source transaction each, played while kvsz streams. */
export const STEPS: DemoStep[] = [
  {
    op: "INSERT employees",
    what: "hire John Doe, salary 1000",
    sql: [`INSERT INTO employees VALUES (1, 'John', 'Doe', 1000)`, audit("John Doe hired")],
  },
  {
    op: "INSERT orders",
    what: "orders 3 and 4 placed",
    sql: [
      `INSERT INTO orders VALUES (3, 'Acme Corp', 99.90, 'new'), (4, 'John Doe', 10.00, 'new')`,
      audit("orders 3 and 4 placed"),
    ],
  },
  {
    op: "UPDATE employees",
    what: "John Doe: salary 1000 -> 1200",
    sql: [`UPDATE employees SET salary = 1200 WHERE id = 1`, audit("John Doe: salary 1200")],
  },
  {
    op: "UPDATE orders",
    what: "order 1 shipped",
    sql: [`UPDATE orders SET status = 'shipped' WHERE id = 1`, audit("order 1 shipped")],
  },
  {
    op: "UPDATE employees",
    what: "John Doe: salary 1200 -> 2000",
    sql: [`UPDATE employees SET salary = 2000 WHERE id = 1`, audit("John Doe: salary 2000")],
  },
  {
    op: "DELETE orders",
    what: "order 2 cancelled",
    sql: [`DELETE FROM orders WHERE id = 2`, audit("order 2 cancelled")],
  },
  {
    op: "DELETE employees",
    what: "John Doe leaves",
    sql: [`DELETE FROM employees WHERE id = 1`, audit("John Doe left")],
  },
  {
    op: "TRUNCATE audit_log",
    what: "the audit log is emptied",
    sql: [`TRUNCATE audit_log`],
  },
  {
    op: "INSERT audit_log",
    what: "first row after the TRUNCATE",
    sql: [audit("audit log rotated")],
  },
];

/** Id of the employee whose salary history is shown (John Doe). */
export const STORY_EMPLOYEE_ID = 1;

/** The kvsz config (YAML) mapping the demo tables from `source` into `dest`. */
export function demoConfigYaml(source: LocalCluster, dest: LocalCluster, metricsListen: string) {
  const tables = TABLES.map((t) => `      ${t.name}: { type: ${t.mode} }`).join("\n");
  return `# kvsz demo: throwaway local servers; their passwords are random and for this demo only.
destination:
  url: ${dest.url(DEST_DB)}
  schema: public
databases:
  - database: ${SOURCE_DB}
    urls:
      - url: ${source.url(SOURCE_DB)}
        sid: ${SID}
    tables:
${tables}
apply:
  commit_interval_ms: 50
metrics:
  listen: "${metricsListen}"
`;
}
