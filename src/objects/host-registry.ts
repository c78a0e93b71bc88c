import { DurableObject } from "cloudflare:workers";
import { claimPlan, type HostRegistryApi, hostTaken, type Outcome, outcomeOf, serialQueue } from "../sites/owner";
import { HOST_PREFIX, siteIdOf, siteKey } from "../sites/store";

/**
 * `REGISTRY` → HostRegistry: one instance (named "hosts") that owns every host → site id claim, in its
 * SQLite storage. One object serializes every claim, so two sites can never hold one host. A released host
 * keeps its row (site_id NULL): the registry never again trusts what KV says about it, since a KV read may
 * still show the released site for up to a minute. The decisions are pure (`claimPlan`, src/sites/owner.ts).
 */
export class HostRegistry extends DurableObject<Env> implements HostRegistryApi {
  private readonly serial = serialQueue();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, site_id TEXT)");
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS hosts_by_site ON hosts (site_id)");
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS pending_deletes (host TEXT PRIMARY KEY)");
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
