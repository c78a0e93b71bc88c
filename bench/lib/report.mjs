// The bench's report: plain-text tables for stdout, and an SVG chart written by hand (no dependencies).

const KiB = 1024;
const MiB = 1024 * KiB;
const LABELS = { tiercel: "Tiercel", baseline: "Baseline" };

const size = (bytes) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
const ms = (value) => (value === null || value === undefined || Number.isNaN(value) ? "n/a" : value.toFixed(1));
const mib = (kib) => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(0)} MiB` : "n/a");

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => String(row[i]).length)));
  const line = (cells) => cells.map((cell, i) => String(cell).padStart(widths[i])).join("  ");
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function renderTables(r) {
  const p = r.parameters;
  const out = [];
  out.push(
    `Tiercel vs baseline (${p.mode}; origin ${p.originLatencyMs} ms to first byte, ${p.originMbps || "∞"} Mbit/s; ` +
      `medians of ${p.runs} runs; ${r.elapsedS} s)`,
  );

  out.push("\n1. Time to first byte per tier (ms)");
  const tierRows = [];
  for (const s of p.tierSizes) {
    const t = r.tiers.find((row) => row.worker === "tiercel" && row.size === s);
    const b = r.tiers.find((row) => row.worker === "baseline" && row.size === s);
    tierRows.push([
      size(s),
      ms(t.originTtfbMs),
      ms(t.globalTtfbMs),
      ms(t.edgeTtfbMs),
      ms(b.originTtfbMs),
      b.globalTtfbMs === null ? "n/a*" : ms(b.globalTtfbMs),
      ms(b.edgeTtfbMs),
    ]);
  }
  out.push(
    table(["size", "T origin", "T global", "T edge", "B origin", "B global", "B edge"], tierRows),
    "   T = Tiercel, B = baseline; origin = first request (miss), global = first request in a second data",
    "   center that has the KV but an empty Cache API, edge = the Cache API of the data center.",
  );
  if (r.tiers.some((row) => row.globalNote)) out.push(`   * ${r.tiers.find((row) => row.globalNote).globalNote}`);

  out.push("\n2. The miss path: TTFB and total time against object size (ms)");
  out.push(
    table(
      ["size", "T TTFB", "T total", "B TTFB", "B total"],
      p.missSizes.map((s) => {
        const t = r.missPath.find((row) => row.worker === "tiercel" && row.size === s);
        const b = r.missPath.find((row) => row.worker === "baseline" && row.size === s);
        return [size(s), ms(t.ttfbMs), ms(t.totalMs), ms(b.ttfbMs), ms(b.totalMs)];
      }),
    ),
  );
  const transfer = (s) => (p.originMbps > 0 ? (s * 8) / (p.originMbps * 1e3) : 0);
  out.push(
    `   the origin alone: ${p.originLatencyMs} ms + size / ${p.originMbps} Mbit/s ` +
      `(${size(p.missSizes.at(-1))}: ${(p.originLatencyMs + transfer(p.missSizes.at(-1))).toFixed(0)} ms)`,
  );

  out.push(`\n3. Edge hits (10 KiB) at ${p.concurrency} concurrent for ${p.durationS} s`);
  out.push(
    table(
      ["worker", "requests", "req/s", "p50 ms", "p99 ms", "errors", "answered by"],
      r.throughput.map((t) => [
        LABELS[t.worker],
        t.requests,
        t.rps.toFixed(0),
        ms(t.p50Ms),
        ms(t.p99Ms),
        t.errors,
        Object.entries(t.tiers)
          .map(([k, v]) => `${k} ${v}`)
          .join(", "),
      ]),
    ),
  );

  out.push(
    `\n4. Origin requests caused by ${p.collapseRequests} concurrent requests for one cold ${size(p.collapseSize)} object`,
  );
  out.push(
    table(
      ["worker", "origin requests", "200 OK", "TTFB p50 ms", "TTFB max ms", "answered by"],
      r.collapse.map((c) => [
        LABELS[c.worker],
        c.originRequests,
        c.ok,
        ms(c.ttfbP50Ms),
        ms(c.ttfbMaxMs),
        Object.entries(c.tiers)
          .map(([k, v]) => `${k} ${v}`)
          .join(", "),
      ]),
    ),
  );

  const c = r.config;
  out.push(
    `\n5. Tiercel site-config KV reads (${c.on.requests} + ${c.off.requests} requests over ${c.windowS} s each)`,
  );
  out.push(
    table(
      ["micro-cache", "requests", "KV reads", "per 10,000", "memory hits", "cache hits"],
      [c.off, c.on].map((row) => [
        row.cacheSeconds ? `${row.cacheSeconds} s` : "off (0)",
        row.requests,
        row.kvReads,
        row.kvReadsPer10k.toFixed(1),
        row.memoryHits,
        row.cacheHits,
      ]),
    ),
    `   cut: ${c.cutPercent.toFixed(2)}% (the write-up: about 80% at 30 s)`,
  );

  out.push(`\n6. Memory of the Worker's workerd process while ${size(p.memorySize)} streams through (RSS)`);
  out.push(
    table(
      ["worker", "idle", "peak (miss)", "+ miss", "peak (edge hit)", "+ edge hit"],
      r.memory.map((m) => [
        LABELS[m.worker],
        mib(m.idleKiB),
        mib(m.missPeakKiB),
        mib(m.missDeltaKiB),
        mib(m.edgePeakKiB),
        mib(m.edgeDeltaKiB),
      ]),
    ),
  );

  out.push("\nChecks");
  for (const check of r.checks) out.push(`  ${check.ok ? "ok  " : "FAIL"}  ${check.name}  (${check.detail})`);
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------- SVG

const COLORS = {
  tiercel: { origin: "#1f4e79", global: "#2e75b6", edge: "#9dc3e6" },
  baseline: { origin: "#7f3f00", global: "#c55a11", edge: "#f4b183" },
};
const esc = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** y on a log scale from `lo` to `hi` mapped onto [bottom, top]. */
function logScale(lo, hi, bottom, top) {
  const a = Math.log10(lo);
  const b = Math.log10(hi);
  return (v) => bottom - ((Math.log10(Math.min(hi, Math.max(lo, v))) - a) / (b - a)) * (bottom - top);
}

export function renderSvg(r) {
  const p = r.parameters;
  const W = 980;
  const H = 860;
  const parts = [];
  const text = (x, y, s, attrs = "") => parts.push(`<text x="${x}" y="${y}" ${attrs}>${esc(s)}</text>`);
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  );
  text(
    20,
    28,
    `Tiercel vs baseline — origin ${p.originLatencyMs} ms + ${p.originMbps || "∞"} Mbit/s, medians of ${p.runs} runs (${p.mode})`,
    'font-size="16" font-weight="bold"',
  );

  // Panel 1: grouped bars, TTFB per tier per size, log scale.
  const top1 = 70;
  const bottom1 = 400;
  const left = 80;
  const right = W - 30;
  text(left, top1 - 20, "1. Time to first byte per tier (ms, log scale)", 'font-size="14" font-weight="bold"');
  const values1 = r.tiers.flatMap((t) => [t.originTtfbMs, t.globalTtfbMs, t.edgeTtfbMs]).filter((v) => v > 0);
  const lo1 = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(...values1))));
  const hi1 = 10 ** Math.ceil(Math.log10(Math.max(...values1)));
  const y1 = logScale(lo1, hi1, bottom1, top1);
  for (let v = lo1; v <= hi1; v *= 10) {
    parts.push(`<line x1="${left}" x2="${right}" y1="${y1(v)}" y2="${y1(v)}" stroke="#ddd"/>`);
    text(left - 8, y1(v) + 4, v >= 1 ? String(v) : v.toFixed(1), 'text-anchor="end" fill="#555"');
  }
  const groupWidth = (right - left) / p.tierSizes.length;
  const barWidth = Math.min(34, (groupWidth - 40) / 6);
  p.tierSizes.forEach((s, g) => {
    const x0 = left + g * groupWidth + (groupWidth - 6 * barWidth - 12) / 2;
    let i = 0;
    for (const worker of ["tiercel", "baseline"]) {
      const row = r.tiers.find((t) => t.worker === worker && t.size === s);
      for (const tier of ["origin", "global", "edge"]) {
        const v = row[`${tier}TtfbMs`];
        const x = x0 + i * barWidth + (worker === "baseline" ? 12 : 0);
        if (v > 0) {
          const y = y1(v);
          parts.push(
            `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${barWidth - 3}" height="${(bottom1 - y).toFixed(1)}" fill="${COLORS[worker][tier]}"><title>${esc(`${LABELS[worker]} ${tier} ${size(s)}: ${ms(v)} ms`)}</title></rect>`,
          );
          text(
            (x + (barWidth - 3) / 2).toFixed(1),
            (y - 4).toFixed(1),
            v >= 100 ? v.toFixed(0) : v.toFixed(1),
            'text-anchor="middle" font-size="10"',
          );
        } else {
          text(
            (x + (barWidth - 3) / 2).toFixed(1),
            bottom1 - 4,
            "n/a",
            'text-anchor="middle" font-size="10" fill="#c00"',
          );
        }
        i++;
      }
    }
    text(
      (left + g * groupWidth + groupWidth / 2).toFixed(1),
      bottom1 + 20,
      size(s),
      'text-anchor="middle" font-weight="bold"',
    );
  });
  parts.push(`<line x1="${left}" x2="${right}" y1="${bottom1}" y2="${bottom1}" stroke="#333"/>`);
  let lx = left;
  for (const worker of ["tiercel", "baseline"]) {
    for (const tier of ["origin", "global", "edge"]) {
      parts.push(`<rect x="${lx}" y="${bottom1 + 34}" width="12" height="12" fill="${COLORS[worker][tier]}"/>`);
      const label = `${LABELS[worker]} ${tier === "global" ? "global tier (KV)" : tier === "edge" ? "edge (Cache API)" : "origin (miss)"}`;
      text(lx + 16, bottom1 + 44, label);
      lx += 16 + label.length * 6.6 + 14;
    }
  }

  // Panel 2: the miss path, TTFB (solid) and total (dashed) against size, log–log.
  const top2 = 520;
  const bottom2 = 800;
  text(
    left,
    top2 - 20,
    "2. The miss path: TTFB (solid) and total time (dashed) against object size",
    'font-size="14" font-weight="bold"',
  );
  const values2 = r.missPath.flatMap((m) => [m.ttfbMs, m.totalMs]).filter((v) => v > 0);
  const lo2 = 10 ** Math.floor(Math.log10(Math.min(...values2)));
  const hi2 = 10 ** Math.ceil(Math.log10(Math.max(...values2)));
  const y2 = logScale(lo2, hi2, bottom2, top2);
  const sizes = p.missSizes;
  const xl = (s) =>
    left +
    20 +
    ((Math.log10(s) - Math.log10(sizes[0])) / (Math.log10(sizes.at(-1)) - Math.log10(sizes[0]))) * (right - left - 60);
  for (let v = lo2; v <= hi2; v *= 10) {
    parts.push(`<line x1="${left}" x2="${right}" y1="${y2(v)}" y2="${y2(v)}" stroke="#ddd"/>`);
    text(left - 8, y2(v) + 4, String(v), 'text-anchor="end" fill="#555"');
  }
  for (const s of sizes) {
    parts.push(`<line x1="${xl(s)}" x2="${xl(s)}" y1="${top2}" y2="${bottom2}" stroke="#eee"/>`);
    text(xl(s).toFixed(1), bottom2 + 18, size(s), 'text-anchor="middle"');
  }
  parts.push(`<line x1="${left}" x2="${right}" y1="${bottom2}" y2="${bottom2}" stroke="#333"/>`);
  text(left - 60, (top2 + bottom2) / 2, "ms", 'fill="#555"');
  for (const worker of ["tiercel", "baseline"]) {
    const rows = sizes.map((s) => r.missPath.find((m) => m.worker === worker && m.size === s));
    for (const [field, dash] of [
      ["ttfbMs", ""],
      ["totalMs", ' stroke-dasharray="6 4"'],
    ]) {
      const points = rows.filter((m) => m[field] > 0).map((m) => `${xl(m.size).toFixed(1)},${y2(m[field]).toFixed(1)}`);
      parts.push(
        `<polyline points="${points.join(" ")}" fill="none" stroke="${COLORS[worker].origin}" stroke-width="2.5"${dash}/>`,
      );
      for (const m of rows.filter((row) => row[field] > 0)) {
        parts.push(
          `<circle cx="${xl(m.size).toFixed(1)}" cy="${y2(m[field]).toFixed(1)}" r="3.5" fill="${COLORS[worker].origin}"><title>${esc(`${LABELS[worker]} ${field === "ttfbMs" ? "TTFB" : "total"} ${size(m.size)}: ${ms(m[field])} ms`)}</title></circle>`,
        );
        if (field === "ttfbMs") {
          text(
            xl(m.size).toFixed(1),
            (y2(m[field]) + (worker === "tiercel" ? 16 : -8)).toFixed(1),
            ms(m[field]),
            `text-anchor="middle" font-size="10" fill="${COLORS[worker].origin}"`,
          );
        }
      }
    }
  }
  let lx2 = left;
  for (const worker of ["tiercel", "baseline"]) {
    for (const [label, dash] of [
      ["TTFB", ""],
      ["total", ' stroke-dasharray="6 4"'],
    ]) {
      parts.push(
        `<line x1="${lx2}" x2="${lx2 + 26}" y1="${bottom2 + 40}" y2="${bottom2 + 40}" stroke="${COLORS[worker].origin}" stroke-width="2.5"${dash}/>`,
      );
      text(lx2 + 32, bottom2 + 44, `${LABELS[worker]} ${label}`);
      lx2 += 150;
    }
  }
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
