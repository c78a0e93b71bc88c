// The bench's report: plain-text tables for stdout, and an SVG chart written by hand (no dependencies).
import { renderHotpath } from "../phases/hotpath.mjs";

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

/** Table cells for a Worker's row that is missing (its phase failed). */
const missingRow = (worker, width) => [LABELS[worker], "not measured (phase failed)", ...Array(width - 2).fill("")];
const tierList = (tiers) =>
  Object.entries(tiers ?? {})
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

function header(r) {
  const p = r.parameters;
  const m = r.machine ?? {};
  const lines = [
    `Tiercel vs baseline (${p.mode}; origin ${p.originLatencyMs} ms to first byte, ${p.originMbps || "∞"} Mbit/s; ` +
      `medians of ${p.runs} runs; ${r.elapsedS} s)`,
    `machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}; node ${m.node}, wrangler ${m.wrangler} ` +
      `(workerd ${m.workerd}, miniflare ${m.miniflare})`,
  ];
  if (r.code) {
    const changes = r.code.uncommitted.length;
    lines.push(
      `code: ${r.code.commit?.slice(0, 12) ?? "unknown commit"}${changes ? ` + ${changes} uncommitted changes` : ""}`,
    );
  }
  for (const phase of r.phases.filter((ph) => !ph.ok)) {
    lines.push(`INCOMPLETE: phase "${phase.name}" failed: ${phase.error.split("\n")[0]}`);
  }
  return lines;
}

function tierSection(r) {
  const p = r.parameters;
  const out = ["\n1. Time to first byte per tier (ms)"];
  let anyFailed = false;
  const cell = (row, field, failed) => {
    anyFailed ||= failed > 0;
    return `${ms(row[field])}${failed > 0 ? "†" : ""}`;
  };
  const rows = p.tierSizes.map((s) => {
    const cells = [size(s)];
    for (const worker of ["tiercel", "baseline"]) {
      const row = r.tiers.find((t) => t.worker === worker && t.size === s);
      cells.push(
        cell(row, "originTtfbMs", row.failed.origin),
        row.kvRefused ? "n/a*" : cell(row, "globalTtfbMs", row.failed.global),
        cell(row, "edgeTtfbMs", row.failed.edge) + (row.edgeFrom === "A" ? "‡" : ""),
      );
    }
    return cells;
  });
  out.push(
    table(["size", "T origin", "T global", "T edge", "B origin", "B global", "B edge"], rows),
    "   T = Tiercel, B = baseline; origin = first request (a miss) in data center A; global = first request in",
    "   data center B, which has A's KV but an empty Cache API; edge = the following requests in B (its Cache API).",
  );
  if (r.tiers.some((row) => row.edgeFrom === "A")) {
    out.push("   ‡ edge hits in A, right after the miss: this object never reached B's KV, so B has no copy to hit");
  }
  const note = r.tiers.find((row) => row.globalNote)?.globalNote;
  if (note) out.push(`   * ${note}`);
  if (anyFailed)
    out.push("   † some samples of this figure failed or timed out: the median is of the others (see the JSON)");
  return out;
}

function missSection(r) {
  const p = r.parameters;
  const rows = p.missSizes.map((s) => {
    const t = r.missPath.find((row) => row.worker === "tiercel" && row.size === s);
    const b = r.missPath.find((row) => row.worker === "baseline" && row.size === s);
    const mark = (row) => (row.failed ? `† (${row.failed} failed)` : "");
    return [size(s), ms(t.ttfbMs), ms(t.totalMs) + mark(t), ms(b.ttfbMs), ms(b.totalMs) + mark(b)];
  });
  const transfer = (s) => (p.originMbps > 0 ? (s * 8) / (p.originMbps * 1e3) : 0);
  return [
    "\n2. The miss path: TTFB and total time against object size (ms)",
    table(["size", "T TTFB", "T total", "B TTFB", "B total"], rows),
    `   the origin alone: ${p.originLatencyMs} ms + size / ${p.originMbps} Mbit/s ` +
      `(${size(p.missSizes.at(-1))}: ${(p.originLatencyMs + transfer(p.missSizes.at(-1))).toFixed(0)} ms)`,
  ];
}

function throughputSection(r) {
  const p = r.parameters;
  const headers = ["worker", "requests", "req/s", "p50 ms", "p99 ms", "errors", "answered by"];
  const rows = ["tiercel", "baseline"].map((worker) => {
    const t = r.throughput.find((row) => row.worker === worker);
    if (!t) return missingRow(worker, headers.length);
    return [LABELS[worker], t.requests, t.rps.toFixed(0), ms(t.p50Ms), ms(t.p99Ms), t.errors, tierList(t.tiers)];
  });
  return [`\n3. Edge hits (10 KiB) at ${p.concurrency} concurrent for ${p.durationS} s`, table(headers, rows)];
}

function collapseSection(r) {
  const p = r.parameters;
  const timeoutS = p.timeoutsMs.burst / 1000;
  const headers = [
    "worker",
    "origin requests",
    "200 OK",
    `not done in ${timeoutS} s`,
    "TTFB p50 ms",
    "TTFB max ms",
    "all done ms",
    "answered by",
  ];
  const rows = ["tiercel", "baseline"].map((worker) => {
    const c = r.collapse.find((row) => row.worker === worker);
    if (!c) return missingRow(worker, headers.length);
    return [
      LABELS[worker],
      c.originRequests,
      c.ok,
      c.incomplete,
      ms(c.ttfbP50Ms),
      c.incomplete ? `> ${timeoutS * 1000}` : ms(c.ttfbMaxMs),
      c.allDoneMs === null ? `> ${timeoutS * 1000}` : ms(c.allDoneMs),
      tierList(c.tiers),
    ];
  });
  const out = [
    `\n4. Origin requests caused by ${p.collapseRequests} concurrent requests for one cold ${size(p.collapseSize)} object`,
    table(headers, rows),
  ];
  if (r.collapse.length) {
    const slowest = r.collapse.map((c) => `${LABELS[c.worker]} ${ms(c.originServeMsMax)}`).join(", ");
    out.push(`   the origin's slowest response in the burst took (ms): ${slowest} (each response is paced on its own)`);
  }
  return out;
}

function configSection(r) {
  const c = r.config;
  if (!c) return ["\n5. Tiercel site-config KV reads: not measured (phase failed)"];
  const rows = [c.off, c.on].map((row) => [
    row.cacheSeconds ? `${row.cacheSeconds} s` : "off (0)",
    row.requests,
    row.kvReads,
    row.kvReadsPer10k.toFixed(1),
    row.memoryHits,
    row.cacheHits,
  ]);
  return [
    `\n5. Tiercel site-config KV reads (${c.on.requests} + ${c.off.requests} requests over ${c.windowS} s each)`,
    table(["micro-cache", "requests", "KV reads", "per 10,000", "memory hits", "cache hits"], rows),
    `   cut: ${c.cutPercent.toFixed(2)}% (the write-up: about 80% at 30 s); with the micro-cache on, ` +
      `${c.on.kvReads} reads over ${(c.on.elapsedS / c.on.cacheSeconds).toFixed(1)} periods of ${c.on.cacheSeconds} s`,
  ];
}

function memorySection(r) {
  const p = r.parameters;
  const headers = ["worker", "idle", "peak (miss)", "+ miss", "peak (edge hit)", "+ edge hit"];
  const rows = ["tiercel", "baseline"].map((worker) => {
    const m = r.memory.find((row) => row.worker === worker);
    if (!m) return missingRow(worker, headers.length);
    return [
      LABELS[worker],
      mib(m.idleKiB),
      mib(m.missPeakKiB),
      mib(m.missDeltaKiB),
      mib(m.edgePeakKiB),
      mib(m.edgeDeltaKiB),
    ];
  });
  return [
    `\n6. Memory of the Worker's workerd process while ${size(p.memorySize)} streams through (RSS)`,
    table(headers, rows),
  ];
}

export function renderTables(r) {
  const out = [
    ...header(r),
    ...tierSection(r),
    ...missSection(r),
    ...throughputSection(r),
    ...collapseSection(r),
    ...configSection(r),
    ...memorySection(r),
    ...renderHotpath(r.hotpath, table),
    "\nChecks",
  ];
  for (const check of r.checks) out.push(`  ${check.ok ? "ok  " : "FAIL"}  ${check.name}  (${check.detail})`);
  if (r.checks.some((check) => check.goal && !check.ok) && !r.parameters.strict) {
    out.push("  (the goal: checks are issue 16's targets; they decide the exit code only with --strict)");
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------- SVG

const COLORS = {
  tiercel: { origin: "#1f4e79", global: "#2e75b6", edge: "#9dc3e6" },
  baseline: { origin: "#7f3f00", global: "#c55a11", edge: "#f4b183" },
};
const esc = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** The powers of ten around the positive values (1 to 1000 ms when there are none: every phase failed). */
function decades(values) {
  const positive = values.filter((v) => v > 0);
  if (positive.length === 0) return [1, 1000];
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(...positive))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...positive)));
  return [lo, hi > lo ? hi : lo * 10];
}

/** y on a log scale from `lo` to `hi` mapped onto [bottom, top]. */
function logScale(lo, hi, bottom, top) {
  const a = Math.log10(lo);
  const b = Math.log10(hi);
  return (v) => bottom - ((Math.log10(Math.min(hi, Math.max(lo, v))) - a) / (b - a)) * (bottom - top);
}

/** The figures the chart does not draw, so the chart can be read on its own. */
function otherFigures(r) {
  const p = r.parameters;
  const by = (rows, worker) => rows.find((row) => row.worker === worker);
  const parts = [];
  const [tc, bc] = [by(r.collapse, "tiercel"), by(r.collapse, "baseline")];
  if (tc && bc) {
    parts.push(
      `${p.collapseRequests} concurrent cold requests → origin requests: Tiercel ${tc.originRequests}, baseline ${bc.originRequests}`,
    );
  }
  const [tt, bt] = [by(r.throughput, "tiercel"), by(r.throughput, "baseline")];
  if (tt && bt) parts.push(`edge hits at ${p.concurrency}: ${tt.rps.toFixed(0)} vs ${bt.rps.toFixed(0)} req/s`);
  if (r.config) {
    const { on, off } = r.config;
    parts.push(
      `config KV reads per 10,000: ${off.kvReadsPer10k.toFixed(0)} off, ${on.kvReadsPer10k.toFixed(1)} with ${on.cacheSeconds} s micro-cache`,
    );
  }
  const [tm, bm] = [by(r.memory, "tiercel"), by(r.memory, "baseline")];
  if (tm && bm) parts.push(`${size(p.memorySize)} miss RSS +${mib(tm.missDeltaKiB)} vs +${mib(bm.missDeltaKiB)}`);
  return parts;
}

export function renderSvg(r) {
  const p = r.parameters;
  const W = 980;
  const H = 950;
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
  const machine = r.machine ?? {};
  text(
    20,
    46,
    `${r.when.slice(0, 10)} · ${machine.nproc} × ${machine.cpuModel} · node ${machine.node} · wrangler ${machine.wrangler}` +
      (r.complete ? "" : " · INCOMPLETE RUN: some phases failed"),
    `fill="${r.complete ? "#555" : "#c00"}"`,
  );

  // Panel 1: grouped bars, TTFB per tier per size, log scale.
  const top1 = 90;
  const bottom1 = 400;
  const left = 80;
  const right = W - 30;
  text(left, top1 - 20, "1. Time to first byte per tier (ms, log scale)", 'font-size="14" font-weight="bold"');
  const [lo1, hi1] = decades(r.tiers.flatMap((t) => [t.originTtfbMs, t.globalTtfbMs, t.edgeTtfbMs]));
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
            (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + (tier === "edge" && row.edgeFrom === "A" ? "‡" : ""),
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
  // Legend: one row per Worker, so it fits the width.
  ["tiercel", "baseline"].forEach((worker, row) => {
    let lx = left;
    const y = bottom1 + 34 + row * 18;
    for (const tier of ["origin", "global", "edge"]) {
      parts.push(`<rect x="${lx}" y="${y}" width="12" height="12" fill="${COLORS[worker][tier]}"/>`);
      const label = `${LABELS[worker]} ${tier === "global" ? "global tier (KV)" : tier === "edge" ? "edge (Cache API)" : "origin (miss)"}`;
      text(lx + 16, y + 10, label);
      lx += 16 + label.length * 6.6 + 24;
    }
  });
  const note = r.tiers.find((row) => row.globalNote)?.globalNote;
  if (note) text(left, bottom1 + 86, `n/a: ${note}`, 'font-size="11" fill="#c00"');
  text(
    left,
    bottom1 + 102,
    "global = first request in a second data center (B) that has the KV only; edge = the following requests in B" +
      (r.tiers.some((row) => row.edgeFrom === "A") ? " (‡ in A: no copy in B's KV)" : ""),
    'font-size="11" fill="#555"',
  );

  // Panel 2: the miss path, TTFB (solid) and total (dashed) against size, log–log.
  const top2 = 550;
  const bottom2 = 830;
  text(
    left,
    top2 - 20,
    "2. The miss path: TTFB (solid) and total time (dashed) against object size",
    'font-size="14" font-weight="bold"',
  );
  const [lo2, hi2] = decades(r.missPath.flatMap((m) => [m.ttfbMs, m.totalMs]));
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
  const others = otherFigures(r);
  text(20, H - 34, others.slice(0, 2).join(" · "), 'font-size="11" fill="#333"');
  text(20, H - 16, others.slice(2).join(" · "), 'font-size="11" fill="#333"');
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
