import { DurableObject } from "cloudflare:workers";
import { TiercelError } from "../core/errors";
import { AUDIT_KEEP_MS, AUDIT_KEEP_RECORDS, type AuditEntry, type AuditQuery, type AuditRecord } from "../sites/audit";
import {
  type AuditHandOver,
  claimPlan,
  type HostRegistryApi,
  hostTaken,
  type Outcome,
  outcomeOf,
  serialQueue,
} from "../sites/owner";
import { HOST_PREFIX, siteIdOf, siteKey } from "../sites/store";
import { type Actor, MAX_TOKENS, type StoredToken, type TokenInfo, tokenInfo } from "../sites/tokens";

/**
 * `REGISTRY` → HostRegistry: one instance (named "hosts") that owns every host → site id claim, in its
 * SQLite storage. One object serializes every claim, so two sites can never hold one host. A released host
 * keeps its row (site_id NULL): the registry never again trusts what KV says about it, since a KV read may
 * still show the released site for up to a minute. The decisions are pure (`claimPlan`, src/sites/owner.ts).
 *
 * It also keeps the admin API's site-scoped tokens (`tokens`: SHA-256 of each secret, never the secret) and
 * the audit log (`audit`: every change, handed over by the site owners, and the token changes it makes
 * itself, each in the transaction that stores the token; src/sites/audit.ts). Those are plain SQLite reads
 * and writes with no await between them, so they need not wait in the claims' queue.
 */
export class HostRegistry extends DurableObject<Env> implements HostRegistryApi {
  private readonly serial = serialQueue();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, site_id TEXT)");
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS hosts_by_site ON hosts (site_id)");
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS pending_deletes (host TEXT PRIMARY KEY)");
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, sites TEXT NOT NULL, hash TEXT NOT NULL, created_at INTEGER NOT NULL)",
    );
    // `source`/`source_seq`: the owner and its outbox number, so a record handed over twice is kept once.
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, site_id TEXT, record TEXT NOT NULL, source TEXT, source_seq INTEGER, UNIQUE (source, source_seq))",
    );
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS audit_by_site ON audit (site_id, id)");
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)");
  }

  createToken(token: StoredToken, actor: Actor): Promise<Outcome<TokenInfo>> {
    return outcomeOf(() => {
      const count = this.ctx.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM tokens").one().n;
      if (count >= MAX_TOKENS) {
        throw new TiercelError("invalid_config", 400, `At most ${MAX_TOKENS} tokens: revoke one first`);
      }
      const info = tokenInfo(token);
      this.ctx.storage.transactionSync(() => {
        this.ctx.storage.sql.exec(
          "INSERT INTO tokens (id, name, sites, hash, created_at) VALUES (?, ?, ?, ?, ?)",
          token.id,
          token.name,
          JSON.stringify(token.sites),
          token.hash,
          token.createdAt,
        );
        this.record(null, null, {
          at: token.createdAt,
          actor,
          action: "token.create",
          site: null,
          hosts: [],
          summary: { token: token.id, name: token.name, sites: token.sites },
        });
      });
      return info;
    });
  }

  async token(id: string): Promise<StoredToken | null> {
    const row = this.ctx.storage.sql
      .exec<{ id: string; name: string; sites: string; hash: string; created_at: number }>(
        "SELECT id, name, sites, hash, created_at FROM tokens WHERE id = ?",
        id,
      )
      .toArray()[0];
    return row
      ? { id: row.id, name: row.name, sites: JSON.parse(row.sites), hash: row.hash, createdAt: row.created_at }
      : null;
  }

  async listTokens(): Promise<TokenInfo[]> {
    return this.ctx.storage.sql
      .exec<{ id: string; name: string; sites: string; created_at: number }>(
        "SELECT id, name, sites, created_at FROM tokens ORDER BY created_at, id",
      )
      .toArray()
      .map((row) =>
        tokenInfo({ id: row.id, name: row.name, sites: JSON.parse(row.sites), hash: "", createdAt: row.created_at }),
      );
  }

  revokeToken(id: string, actor: Actor, at: number): Promise<Outcome<TokenInfo>> {
    return outcomeOf(async () => {
      const token = await this.token(id);
      if (!token) throw new TiercelError("not_found", 404, `No token ${id}`);
      this.ctx.storage.transactionSync(() => {
        this.ctx.storage.sql.exec("DELETE FROM tokens WHERE id = ?", id);
        this.record(null, null, {
          at,
          actor,
          action: "token.revoke",
          site: null,
          hosts: [],
          summary: { token: token.id, name: token.name, sites: token.sites },
        });
      });
      return tokenInfo(token);
    });
  }

  /** Keeps the records an owner hands over; one it already has (a retried hand-over) is ignored. */
  async appendAudit(source: string, records: AuditHandOver[]): Promise<void> {
    this.ctx.storage.transactionSync(() => {
      for (const { seq, entry } of records) this.record(source, seq, entry);
    });
  }

  /** Newest first; `sites` (a scoped token's) limits the records to those sites. */
  async audit(query: AuditQuery, sites: string[] | null): Promise<{ records: AuditRecord[]; next: string | null }> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.site !== null) {
      where.push("site_id = ?");
      args.push(query.site);
    }
    if (sites !== null) {
      where.push(`site_id IN (${sites.map(() => "?").join(", ") || "NULL"})`);
      args.push(...sites);
    }
    if (query.beforeId !== null) {
      where.push("id < ?");
      args.push(query.beforeId);
    }
    if (query.beforeAt !== null) {
      where.push("at < ?");
      args.push(query.beforeAt);
    }
    const rows = this.ctx.storage.sql
      .exec<{ id: number; record: string }>(
        `SELECT id, record FROM audit ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`,
        ...args,
        query.limit + 1,
      )
      .toArray();
    const records = rows.slice(0, query.limit).map((row) => {
      const entry = JSON.parse(row.record) as AuditEntry;
      return { id: row.id, ...entry, at: new Date(entry.at).toISOString() };
    });
    return { records, next: rows.length > query.limit ? String(records.at(-1)?.id) : null };
  }

  /** Stores one record and drops what is past retention (both bounded by the indexes). */
  private record(source: string | null, seq: number | null, entry: AuditEntry): void {
    this.ctx.storage.sql.exec(
      "INSERT INTO audit (at, site_id, record, source, source_seq) VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, source_seq) DO NOTHING",
      entry.at,
      entry.site,
      JSON.stringify(entry),
      source,
      seq,
    );
    this.ctx.storage.sql.exec("DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?", AUDIT_KEEP_RECORDS);
    this.ctx.storage.sql.exec("DELETE FROM audit WHERE at < ?", Date.now() - AUDIT_KEEP_MS);
  }

  setHosts(siteId: string, hosts: string[]): Promise<Outcome<{ released: string[] }>> {
    return this.serial(() =>
      outcomeOf(async () => {
        await this.learn(hosts);
        const owners = new Map(hosts.map((host) => [host, this.ownerOf(host)]));
        const plan = claimPlan(owners, siteId, hosts, this.heldBy(siteId));
        if ("taken" in plan) throw hostTaken(plan.taken);
        this.ctx.storage.transactionSync(() => {
          for (const host of plan.claim) {
            this.ctx.storage.sql.exec(
              "INSERT INTO hosts (host, site_id) VALUES (?, ?) ON CONFLICT (host) DO UPDATE SET site_id = excluded.site_id",
              host,
              siteId,
            );
            this.ctx.storage.sql.exec("DELETE FROM pending_deletes WHERE host = ?", host);
          }
          for (const host of plan.release)
            this.ctx.storage.sql.exec("UPDATE hosts SET site_id = NULL WHERE host = ?", host);
        });
        await this.unpublish(plan.release);
        return { released: plan.release };
      }),
    );
  }

  hostsOf(siteId: string, hints: string[]): Promise<string[]> {
    return this.serial(async () => {
      await this.learn(hints);
      return this.heldBy(siteId);
    });
  }

  release(siteId: string): Promise<string[]> {
    return this.serial(async () => {
      const held = this.heldBy(siteId);
      this.ctx.storage.sql.exec("UPDATE hosts SET site_id = NULL WHERE site_id = ?", siteId);
      await this.unpublish(held);
      return held;
    });
  }

  list(after: string | null, limit: number): Promise<{ ids: string[]; cursor: string | null }> {
    return this.serial(async () => {
      // The first page also adopts `host:` keys written by hand since the registry last looked.
      if (after === null) await this.adoptAll();
      const rows = this.ctx.storage.sql
        .exec<{ site_id: string }>(
          "SELECT DISTINCT site_id FROM hosts WHERE site_id IS NOT NULL AND site_id > ? ORDER BY site_id LIMIT ?",
          after ?? "",
          limit + 1,
        )
        .toArray();
      const ids = rows.slice(0, limit).map((row) => row.site_id);
      return { ids, cursor: rows.length > limit ? (ids.at(-1) ?? null) : null };
    });
  }

  /** Retries the KV deletes of released hosts that failed (KV allows one write per second per key). */
  override async alarm(): Promise<void> {
    await this.serial(async () => {
      const hosts = this.ctx.storage.sql
        .exec<{ host: string }>(
          "SELECT p.host FROM pending_deletes p JOIN hosts h ON h.host = p.host WHERE h.site_id IS NULL",
        )
        .toArray()
        .map((row) => row.host);
      this.ctx.storage.sql.exec("DELETE FROM pending_deletes");
      await this.unpublish(hosts);
    });
  }

  private ownerOf(host: string): string | null {
    const row = this.ctx.storage.sql
      .exec<{ site_id: string | null }>("SELECT site_id FROM hosts WHERE host = ?", host)
      .toArray()[0];
    return row?.site_id ?? null;
  }

  private heldBy(siteId: string): string[] {
    return this.ctx.storage.sql
      .exec<{ host: string }>("SELECT host FROM hosts WHERE site_id = ? ORDER BY host", siteId)
      .toArray()
      .map((row) => row.host);
  }

  private known(host: string): boolean {
    return this.ctx.storage.sql.exec("SELECT 1 FROM hosts WHERE host = ?", host).toArray().length > 0;
  }

  /**
   * Hosts the registry has never seen may have been claimed before it existed (or by hand): their `host:`
   * key in KV names the site that holds them. Read once per host; known hosts never consult KV again.
   */
  private async learn(hosts: string[]): Promise<void> {
    const unknown = hosts.filter((host) => !this.known(host));
    const found = await Promise.all(
      unknown.map(async (host) => [host, siteIdOf(await this.env.SITES.get(siteKey(host), "text"))] as const),
    );
    for (const [host, siteId] of found) {
      if (siteId !== null && !this.known(host)) {
        this.ctx.storage.sql.exec("INSERT INTO hosts (host, site_id) VALUES (?, ?)", host, siteId);
      }
    }
  }

  /** Adopts every `host:` key in KV that the registry does not know (one KV list per 1,000 keys). */
  private async adoptAll(): Promise<void> {
    const known = new Set(
      this.ctx.storage.sql
        .exec<{ host: string }>("SELECT host FROM hosts")
        .toArray()
        .map((row) => row.host),
    );
    let cursor: string | undefined;
    do {
      const page = await this.env.SITES.list({ prefix: HOST_PREFIX, ...(cursor ? { cursor } : {}) });
      const unknown = page.keys.map((key) => key.name.slice(HOST_PREFIX.length)).filter((host) => !known.has(host));
      await this.learn(unknown);
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
  }

  /** Deletes released hosts' configs from KV; a failed delete is retried by the alarm a second later. */
  private async unpublish(hosts: string[]): Promise<void> {
    const failed: string[] = [];
    await Promise.all(
      hosts.map((host) =>
        this.env.SITES.delete(siteKey(host)).catch((error: unknown) => {
          console.log(JSON.stringify({ event: "registry.unpublish-failed", host, error: String(error) }));
          failed.push(host);
        }),
      ),
    );
    if (failed.length === 0) return;
    for (const host of failed) {
      this.ctx.storage.sql.exec("INSERT INTO pending_deletes (host) VALUES (?) ON CONFLICT DO NOTHING", host);
    }
    await this.ctx.storage.setAlarm(Date.now() + 1_000);
  }
}
