import { DurableObject } from "cloudflare:workers";
import { TiercelError } from "../core/errors";
import { type AuditEntry, deleteEntry, purgeEntry, siteWriteEntry } from "../sites/audit";
import { type FeedAppend, purgeChange } from "../sites/control";
import {
  type AuditHandOver,
  type ControlFeedApi,
  type HostRegistryApi,
  hasLegacyPurges,
  migrateLegacyPurges,
  nextPublishAt,
  type Outcome,
  type OwnedSite,
  type OwnerState,
  outcomeOf,
  type PurgeDone,
  parsePurgeRequest,
  planPurge,
  type SiteOwnerApi,
  serialQueue,
  siteFromBody,
  unwrap,
} from "../sites/owner";
import { EMPTY_META, type PurgeMeta, type PurgeRows, publishedPurges, recordPurge } from "../sites/purges";
import { parseSite, type Site } from "../sites/schema";
import {
  FEED_NAME,
  legacySiteKey,
  legacyTombstoneKey,
  PURGE_TABLES,
  type PublishedPurges,
  purgesKey,
  REGISTRY_NAME,
  siteIdOf,
  siteKey,
} from "../sites/store";
import { type Actor, checkScopedEdit } from "../sites/tokens";

/** What the owner keeps in its storage (besides `state`). */
interface Published {
  /** The settings revision last written to KV. */
  revision: number;
  /** The purge state version last written to KV. */
  purgeVersion?: number;
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
  private readonly rows: PurgeRows;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    for (const statement of PURGE_TABLES) ctx.storage.sql.exec(statement);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS audit_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL)",
    );
    this.rows = sqlPurgeRows(ctx.storage.sql);
  }

  /** The whole purge state, as published (an isolate that cannot apply a delta asks for it). */
  purges(id: string): Promise<PublishedPurges> {
    return this.serial(async () => {
      await this.load(id);
      return publishedPurges(this.rows, await this.purgeMeta());
    });
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
        await this.announce({ siteId: id, config: { revision: next.revision, hosts: site.hosts, dropped: released } });
        return { site, revision: next.revision, dropped: released };
      }),
    );
  }

  purge(id: string, body: unknown, actor: Actor): Promise<Outcome<PurgeDone>> {
    return this.serial(() =>
      outcomeOf(async () => {
        const request = parsePurgeRequest(body);
        const current = await this.load(id);
        if (current?.kind !== "site") throw new TiercelError("site_not_found", 404, `No site ${id}`);
        const plan = await planPurge(current.site, request);
        const meta = await this.purgeMeta();
        const now = Date.now();
        // All or nothing: a refused purge (purge_limit) leaves the records as they were.
        const next: OwnerState = {
          kind: "site",
          site: plan.site,
          revision: current.revision + 1,
          configRevision: plan.configChanged ? current.revision + 1 : configRevisionOf(current),
        };
        // The records, the state and the audit entry in one transaction.
        const audit = purgeEntry(actor, plan.site, request, next.revision, now);
        const result = this.ctx.storage.transactionSync(() => {
          const done = recordPurge(this.rows, meta, plan.add, now, current.site.cache.maxHold * 1000);
          this.ctx.storage.kv.put("state", next);
          this.ctx.storage.kv.put("purgeMeta", done.meta);
          this.ctx.storage.sql.exec("INSERT INTO audit_outbox (entry) VALUES (?)", JSON.stringify(audit));
          return done;
        });
        await this.publishSoon();
        await this.handOverAudit();
        await this.announce({
          siteId: id,
          purge: purgeChange(result.delta),
          ...(plan.configChanged ? { config: { revision: next.revision, hosts: plan.site.hosts, dropped: [] } } : {}),
        });
        return {
          site: plan.site,
          revision: next.revision,
          keys: plan.keys,
          request,
          delta: result.delta,
          evictedTags: result.evictedTags,
        };
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
        await this.announce({
          siteId: id,
          config: {
            revision: current.revision + 1,
            hosts: [...new Set([...hosts, ...current.site.hosts])],
            dropped: [],
            deleted: true,
          },
        });
        return { hosts: [...new Set([...hosts, ...current.site.hosts])] };
      }),
    );
  }

  override async alarm(): Promise<void> {
    await this.serial(async () => {
      await this.publish();
      await this.handOverAudit();
      await this.announce();
    });
  }

  /**
   * Tells the control feed about a committed change, so every data center sees it within its window. A feed
   * that cannot be reached is logged and the change retried from the alarm a second later (in order, after
   * any it missed before); meanwhile the change is published to KV (the slower path).
   */
  private async announce(change?: FeedAppend): Promise<void> {
    const feed = (this.env as { CONTROL?: Env["CONTROL"] }).CONTROL;
    if (!feed) return;
    // Changes the feed missed go first, in order; at most the last 100 are kept for a retry.
    const pending = (await this.ctx.storage.get<FeedAppend[]>("pendingAnnounce")) ?? [];
    if (change) pending.push(change);
    if (pending.length === 0) return;
    const stub = feed.get(feed.idFromName(FEED_NAME)) as unknown as ControlFeedApi;
    let sent = 0;
    try {
      for (const next of pending) {
        await stub.append(next);
        sent += 1;
      }
      await this.ctx.storage.delete("pendingAnnounce");
    } catch (error) {
      const siteId = pending[sent]?.siteId;
      console.log(JSON.stringify({ event: "owner.announce-failed", siteId, error: String(error) }));
      await this.ctx.storage.put("pendingAnnounce", pending.slice(sent).slice(-100));
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + 1_000);
    }
  }

  private registry(): HostRegistryApi {
    return this.env.REGISTRY.get(this.env.REGISTRY.idFromName(REGISTRY_NAME)) as unknown as HostRegistryApi;
  }

  /** The state, read from KV the first time this owner meets a site stored before owners (or by hand). */
  private async load(id: string): Promise<OwnerState | null> {
    const stored = await this.ctx.storage.get<OwnerState>("state");
    if (stored?.kind === "site" && hasLegacyPurges(stored.site)) {
      // A config from before purges were kept apart: its records move into the purge state (once).
      const meta = await this.purgeMeta();
      const moved = this.ctx.storage.transactionSync(() => migrateLegacyPurges(stored.site, this.rows, meta));
      const next: OwnerState = {
        ...stored,
        site: moved.site,
        configRevision: stored.revision + 1,
        revision: stored.revision + 1,
      };
      await this.ctx.storage.put<unknown>({ state: next, purgeMeta: moved.meta });
      await this.publishSoon();
      await this.announce({
        siteId: id,
        config: { revision: next.revision, hosts: next.site.hosts, dropped: [] },
        purge: { version: moved.meta.version },
      });
      return next;
    }
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

  private async purgeMeta(): Promise<PurgeMeta> {
    return (await this.ctx.storage.get<PurgeMeta>("purgeMeta")) ?? EMPTY_META;
  }

  private async published(): Promise<Published> {
    return (await this.ctx.storage.get<Published>("published")) ?? { revision: 0, at: 0, count: 0 };
  }

  /**
   * Writes what changed since the last publish: the settings under each of the site's hosts, the purge state
   * under `purges:<id>`. A failure is retried a second later, never raised.
   */
  private async publish(): Promise<void> {
    const state = await this.ctx.storage.get<OwnerState>("state");
    const published = await this.published();
    if (state?.kind !== "site") return;
    const meta = await this.purgeMeta();
    const configDue = configRevisionOf(state) !== published.revision;
    const purgesDue = meta.version !== (published.purgeVersion ?? 0);
    if (!configDue && !purgesDue) return;
    const now = Date.now();
    try {
      const writes: Promise<void>[] = [];
      if (configDue) {
        const value = JSON.stringify(settingsOf(state.site));
        const metadata = { revision: configRevisionOf(state) };
        for (const host of state.site.hosts) writes.push(this.env.SITES.put(siteKey(host), value, { metadata }));
      }
      if (purgesDue) {
        const value = JSON.stringify(publishedPurges(this.rows, meta));
        writes.push(this.env.SITES.put(purgesKey(state.site.id), value, { metadata: { version: meta.version } }));
      }
      await Promise.all(writes);
      await this.ctx.storage.put<Published>("published", {
        revision: configRevisionOf(state),
        purgeVersion: meta.version,
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

/** The revision at which the settings last changed (a purge alone does not change them). */
function configRevisionOf(state: Extract<OwnerState, { kind: "site" }>): number {
  return state.configRevision ?? state.revision;
}

/** The settings as published: no purge records (they are published apart). */
function settingsOf(site: Site) {
  const { purges: _purges, ...settings } = site;
  return settings;
}

/** The owner's purge records in its SQLite tables (`PURGE_TABLES`, src/sites/store.ts). */
function sqlPurgeRows(sql: SqlStorage): PurgeRows {
  const one = (query: string, ...bindings: (string | number)[]) =>
    sql.exec<{ v: number | null }>(query, ...bindings).toArray()[0]?.v ?? undefined;
  return {
    liveUrls: (after) => one("SELECT COUNT(*) AS v FROM purge_urls WHERE at > ?", after) ?? 0,
    oldestUrl: (after) => one("SELECT MIN(at) AS v FROM purge_urls WHERE at > ?", after) ?? undefined,
    putUrl(key, at) {
      sql.exec(
        "INSERT INTO purge_urls (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET at = MAX(at, excluded.at)",
        key,
        at,
      );
    },
    putTag(tag, soft, at) {
      sql.exec(
        "INSERT INTO purge_tags (tag, soft, at) VALUES (?, ?, ?) ON CONFLICT (tag, soft) DO UPDATE SET at = MAX(at, excluded.at)",
        tag,
        soft ? 1 : 0,
        at,
      );
    },
    dropUpTo(cutoff) {
      const urls = one("SELECT MAX(at) AS v FROM purge_urls WHERE at <= ?", cutoff);
      const tags = one("SELECT MAX(at) AS v FROM purge_tags WHERE at <= ?", cutoff);
      if (urls !== undefined) sql.exec("DELETE FROM purge_urls WHERE at <= ?", cutoff);
      if (tags !== undefined) sql.exec("DELETE FROM purge_tags WHERE at <= ?", cutoff);
      return urls === undefined ? tags : tags === undefined ? urls : Math.max(urls, tags);
    },
    tagCount: () => one("SELECT COUNT(*) AS v FROM purge_tags") ?? 0,
    dropOldestTags(n) {
      const oldest = sql
        .exec<{ tag: string; soft: number; at: number }>("SELECT tag, soft, at FROM purge_tags ORDER BY at LIMIT ?", n)
        .toArray();
      for (const row of oldest) sql.exec("DELETE FROM purge_tags WHERE tag = ? AND soft = ?", row.tag, row.soft);
      return oldest.at(-1)?.at;
    },
    snapshot() {
      const urls = sql
        .exec<{ key: string; at: number }>("SELECT key, at FROM purge_urls")
        .toArray()
        .map((row): [string, number] => [row.key, row.at]);
      const tags = sql
        .exec<{ tag: string; soft: number; at: number }>("SELECT tag, soft, at FROM purge_tags")
        .toArray();
      return {
        urls,
        tags: tags.filter((row) => row.soft === 0).map((row): [string, number] => [row.tag, row.at]),
        softTags: tags.filter((row) => row.soft === 1).map((row): [string, number] => [row.tag, row.at]),
      };
    },
  };
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
