import { DurableObject } from "cloudflare:workers";
import { TiercelError } from "../core/errors";
import { type AuditEntry, deleteEntry, purgeEntry, siteWriteEntry } from "../sites/audit";
import {
  type AuditHandOver,
  applyPurge,
  type HostRegistryApi,
  nextPublishAt,
  type Outcome,
  type OwnedSite,
  type OwnerState,
  outcomeOf,
  type PurgeRequest,
  parsePurgeRequest,
  type SiteOwnerApi,
  serialQueue,
  siteFromBody,
  unwrap,
} from "../sites/owner";
import { parseSite } from "../sites/schema";
import { legacySiteKey, legacyTombstoneKey, REGISTRY_NAME, siteIdOf, siteKey } from "../sites/store";
import { type Actor, checkScopedEdit } from "../sites/tokens";

/** What the owner keeps in its storage (besides `state`). */
interface Published {
  /** The revision last written to KV. */
  revision: number;
  /** When (epoch ms) it was written. */
  at: number;
  /** How many publishes this owner has made (each is one KV write per host). */
  count: number;
}

/**
 * `SITE_OWNER` → SiteOwner: one instance per site id (by name), the only writer of that site's config,
 * revision and purge state. Calls are serialized (`serialQueue`): each reads the state, decides with the
 * pure functions of src/sites/owner.ts, and stores the next state with the next revision, so no update is
 * lost and no stale state is ever written back. Publishing to KV is coalesced to one write per host per
 * second (`nextPublishAt`): a burst of changes publishes once more, from an alarm, with the latest state.
 *
 * Each change stores its audit record (src/sites/audit.ts) in the same transaction as the new state, in the
 * `audit_outbox` table, then hands it to the registry; a failed hand-over is retried from the alarm.
 */
export class SiteOwner extends DurableObject<Env> implements SiteOwnerApi {
  private readonly serial = serialQueue();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS audit_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL)",
    );
  }

  read(id: string): Promise<Outcome<OwnedSite | null>> {
    return this.serial(() =>
      outcomeOf(async () => {
        const state = await this.load(id);
        return state?.kind === "site" ? { site: state.site, revision: state.revision } : null;
      }),
    );
  }

  write(
    id: string,
    body: unknown,
    ifRevision: number | undefined,
    actor: Actor,
  ): Promise<Outcome<OwnedSite & { dropped: string[] }>> {
    return this.serial(() =>
      outcomeOf(async () => {
        const current = await this.load(id);
        const revision = current?.kind === "site" ? current.revision : 0;
        if (ifRevision !== undefined && ifRevision !== revision) {
          throw new TiercelError(
            "revision_conflict",
            412,
            `The site ${id} is at revision ${revision}, not ${ifRevision}: read it again and reapply the change`,
            { details: { revision } },
          );
        }
        const site = siteFromBody(id, body, current);
        checkScopedEdit(actor, current, site);
        const { released } = unwrap(await this.registry().setHosts(id, site.hosts));
        const next: OwnerState = { kind: "site", site, revision: (current?.revision ?? 0) + 1 };
        const before = current?.kind === "site" ? current.site : null;
        await this.save(id, next, undefined, siteWriteEntry(actor, before, site, next.revision, Date.now()));
        await this.publishSoon();
        await this.handOverAudit();
        return { site, revision: next.revision, dropped: released };
      }),
    );
  }

  purge(
    id: string,
    body: unknown,
    actor: Actor,
  ): Promise<Outcome<OwnedSite & { keys: string[]; request: PurgeRequest }>> {
    return this.serial(() =>
      outcomeOf(async () => {
        const request = parsePurgeRequest(body);
        const current = await this.load(id);
        if (current?.kind !== "site") throw new TiercelError("site_not_found", 404, `No site ${id}`);
        const now = Date.now();
        const { site, keys } = await applyPurge(current.site, request, now);
        const next: OwnerState = { kind: "site", site, revision: current.revision + 1 };
        await this.save(id, next, undefined, purgeEntry(actor, site, request, next.revision, now));
        await this.publishSoon();
        await this.handOverAudit();
        return { site, revision: next.revision, keys, request };
      }),
    );
  }

  remove(id: string, actor: Actor): Promise<Outcome<{ hosts: string[] }>> {
    return this.serial(() =>
      outcomeOf(async () => {
        const current = await this.load(id);
        if (current?.kind !== "site") throw new TiercelError("site_not_found", 404, `No site ${id}`);
        // The registry releases the hosts and deletes their KV copies.
        const hosts = await this.registry().release(id);
        // The tombstone keeps the generation: the id, written again, starts past every entry it stored.
        const revision = current.revision + 1;
        const entry = deleteEntry(actor, current.site, revision, Date.now());
        await this.save(id, { kind: "deleted", generation: current.site.generation, revision }, undefined, entry);
        await this.env.SITES.delete(legacySiteKey(id)).catch(() => undefined);
        await this.handOverAudit();
        return { hosts: [...new Set([...hosts, ...current.site.hosts])] };
      }),
    );
  }

  override async alarm(): Promise<void> {
    await this.serial(async () => {
      await this.publish();
      await this.handOverAudit();
    });
  }

  private registry(): HostRegistryApi {
    return this.env.REGISTRY.get(this.env.REGISTRY.idFromName(REGISTRY_NAME)) as unknown as HostRegistryApi;
  }

  /** The state, read from KV the first time this owner meets a site stored before owners (or by hand). */
  private async load(id: string): Promise<OwnerState | null> {
    const stored = await this.ctx.storage.get<OwnerState>("state");
    if (stored) return stored;
    if (await this.ctx.storage.get<boolean>("empty")) return null;
    const adopted = await this.adopt(id);
    if (adopted) await this.save(id, adopted, adopted.kind === "site" ? adopted.revision : 0);
    else await this.ctx.storage.put("empty", true);
    return adopted;
  }

  private async adopt(id: string): Promise<OwnerState | null> {
    let raw = await this.env.SITES.get(legacySiteKey(id), "text");
    const hinted = raw === null ? [] : hostsIn(raw);
    const held = await this.registry().hostsOf(id, hinted);
    for (const host of held) {
      if (raw !== null) break;
      const candidate = await this.env.SITES.get(siteKey(host), "text");
      if (siteIdOf(candidate) === id) raw = candidate;
    }
    if (raw !== null) {
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (cause) {
        throw new TiercelError("site_config_invalid", 502, `The stored config of site ${id} is not valid JSON`, {
          cause,
        });
      }
      const site = parseSite(json, `site ${id}`);
      // A site added by hand may not list its hosts: the claims say which they are.
      return { kind: "site", site: { ...site, hosts: [...new Set([...site.hosts, ...held])] }, revision: 1 };
    }
    const last = await this.env.SITES.get(legacyTombstoneKey(id), "text");
    const tombstone = last === null ? Number.NaN : Number(last);
    if (Number.isInteger(tombstone) && tombstone >= 0) return { kind: "deleted", generation: tombstone, revision: 0 };
    return null;
  }

  /** Stores the next state and, in the same transaction, the audit record of the change that made it. */
  private async save(id: string, state: OwnerState, publishedRevision?: number, audit?: AuditEntry): Promise<void> {
    this.ctx.storage.transactionSync(() => {
      this.ctx.storage.kv.put("state", state);
      this.ctx.storage.kv.put("id", id);
      this.ctx.storage.kv.put("empty", false);
      if (audit) this.ctx.storage.sql.exec("INSERT INTO audit_outbox (entry) VALUES (?)", JSON.stringify(audit));
    });
    if (publishedRevision !== undefined) {
      await this.ctx.storage.put<Published>("published", { revision: publishedRevision, at: 0, count: 0 });
    }
  }

  /**
   * Hands the outbox's records to the registry (the log the API reads) and drops them once it has them. A
   * failure never fails the change: the records stay and the alarm tries again a second later.
   */
  private async handOverAudit(): Promise<void> {
    const rows = this.ctx.storage.sql
      .exec<{ seq: number; entry: string }>("SELECT seq, entry FROM audit_outbox ORDER BY seq LIMIT 100")
      .toArray();
    const last = rows.at(-1);
    if (!last) return;
    const records: AuditHandOver[] = rows.map((row) => ({ seq: row.seq, entry: JSON.parse(row.entry) }));
    const source = `owner:${records[0]?.entry.site}`;
    try {
      await this.registry().appendAudit(source, records);
      this.ctx.storage.sql.exec("DELETE FROM audit_outbox WHERE seq <= ?", last.seq);
    } catch (error) {
      console.log(JSON.stringify({ event: "owner.audit-handover-failed", source, error: String(error) }));
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + 1_000);
      return;
    }
    if (rows.length === 100) await this.handOverAudit();
  }

  /** Publishes now if the last publish is a second old, else once from an alarm (coalescing a burst). */
  private async publishSoon(): Promise<void> {
    const published = await this.published();
    const now = Date.now();
    const at = nextPublishAt(published.at, now);
    if (at <= now) await this.publish();
    else if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(at);
  }

  private async published(): Promise<Published> {
    return (await this.ctx.storage.get<Published>("published")) ?? { revision: 0, at: 0, count: 0 };
  }

  /** Writes the current config under each of its hosts. A failure is retried a second later, never raised. */
  private async publish(): Promise<void> {
    const state = await this.ctx.storage.get<OwnerState>("state");
    const published = await this.published();
    if (state?.kind !== "site" || state.revision === published.revision) return;
    const value = JSON.stringify(state.site);
    const now = Date.now();
    try {
      await Promise.all(
        state.site.hosts.map((host) =>
          this.env.SITES.put(siteKey(host), value, { metadata: { revision: state.revision } }),
        ),
      );
      await this.ctx.storage.put<Published>("published", {
        revision: state.revision,
        at: now,
        count: published.count + 1,
      });
    } catch (error) {
      console.log(JSON.stringify({ event: "owner.publish-failed", siteId: state.site.id, error: String(error) }));
      await this.ctx.storage.put<Published>("published", { ...published, at: now });
      await this.ctx.storage.setAlarm(now + 1_000);
    }
  }
}

function hostsIn(raw: string): string[] {
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value !== "object" || value === null || !("hosts" in value) || !Array.isArray(value.hosts)) return [];
    return value.hosts.filter((host): host is string => typeof host === "string");
  } catch {
    return [];
  }
}
