// Pure maths of the multireward frontend: weight parsing, simplex grids, slider rescaling and the
// reward-query cost of SRSoup / weighted sum. No DOM, no ComfyUI: the browser tests call these
// directly and against the server's numbers.
//
// Every rule here mirrors a Python function, named in its comment. When one side changes, the
// other must change with it: tests/browser/test_frontend.py runs a real prompt and checks the
// estimate against the report, and checks the error wording against the server's.

// sampling_math/weights.py ROW_SEPARATORS and VALUE_SEPARATORS.
const ROW_SEPARATORS = /[;\n|]+/;
const VALUE_SEPARATORS = /[,\s]+/;
// sampling_math/weights.py MAX_WEIGHT_ROWS and ROW_DECIMALS.
export const MAX_WEIGHT_ROWS = 2048;
const ROW_DECIMALS = 9;

// What Python's float() accepts (digits with single underscores, a point, an exponent, inf/nan),
// so that "0x10" or "1__0" is refused here exactly when the server would refuse it.
const DIGITS = "\\d(?:_?\\d)*";
const PY_FLOAT = new RegExp(
    `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`,
    "i",
);

export class WeightsError extends Error {}

// sampling_math/weights.py too_many_rows.
function tooManyRows(count) {
    return new WeightsError(
        `weights: ${count} weight rows; at most ${MAX_WEIGHT_ROWS} rows (one image each) are allowed per run`,
    );
}

function pyFloat(text) {
    if (!PY_FLOAT.test(text)) return null;
    const bare = text.replace(/_/g, "").toLowerCase();
    if (bare.endsWith("nan")) return NaN;
    if (bare.endsWith("inf") || bare.endsWith("infinity")) return bare.startsWith("-") ? -Infinity : Infinity;
    return Number(bare);
}

// Python's str.strip() and JS trim() agree on ASCII whitespace, which is what users type.
function validateRow(values, numRewards, rowNumber, shown) {
    const where = `weights row ${rowNumber} ('${shown}')`;
    const numbers = values.map(pyFloat);
    if (numbers.some((n) => n === null)) throw new WeightsError(`${where}: every weight must be a number`);
    if (numbers.length !== numRewards) {
        throw new WeightsError(`${where}: has ${numbers.length} values but ${numRewards} rewards are connected`);
    }
    if (numbers.some((n) => !Number.isFinite(n))) throw new WeightsError(`${where}: weights must be finite numbers`);
    if (numbers.some((n) => n < 0)) throw new WeightsError(`${where}: weights must not be negative`);
    const total = numbers.reduce((a, b) => a + b, 0);
    if (total <= 0) throw new WeightsError(`${where}: all weights are zero; at least one must be positive`);
    return numbers.map((n) => n / total);
}

// sampling_math/weights.py parse_weight_rows: at most MAX_WEIGHT_ROWS rows (counted before any is
// read), checked one by one, each normalised to sum 1; the one-hot rows are added later.
export function parseWeightRows(text, numRewards) {
    const chunks = text.split(ROW_SEPARATORS).map((part) => part.trim()).filter((part) => part);
    if (chunks.length > MAX_WEIGHT_ROWS) throw tooManyRows(chunks.length);
    if (!chunks.length) {
        throw new WeightsError(
            "weights: no weight rows given; write rows like '1,0; 0.5,0.5; 0,1' or leave it empty for a grid",
        );
    }
    return chunks.map((chunk, index) => {
        const values = chunk.split(VALUE_SEPARATORS).filter((v) => v);
        return validateRow(values, numRewards, index + 1, chunk);
    });
}

// sampling_math/weights.py order_rows: first reward's weight falling, then the second's, ...
export function orderRows(rows) {
    return [...rows].sort((a, b) => {
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return b[i] - a[i];
        return 0;
    });
}

// sampling_math/weights.py simplex_grid: every lattice point with `divisions` steps per edge.
export function simplexGrid(numRewards, divisions) {
    if (numRewards < 1) throw new WeightsError("rewards: at least one reward is needed");
    if (divisions < 1) throw new WeightsError(`grid_divisions must be at least 1, got ${divisions}`);
    const rows = [];
    const walk = (prefix, left, slots) => {
        if (slots === 1) {
            rows.push([...prefix, left].map((p) => p / divisions));
            return;
        }
        for (let p = 0; p <= left; p++) walk([...prefix, p], left - p, slots - 1);
    };
    walk([], divisions, numRewards);
    return orderRows(rows);
}

export function oneHotRows(numRewards) {
    return Array.from({ length: numRewards }, (_, m) => Array.from({ length: numRewards }, (_, i) => (i === m ? 1 : 0)));
}

// sampling_math/weights.py row_key: the row rounded half up to ROW_DECIMALS decimals.
function rowKey(row) {
    const scale = 10 ** ROW_DECIMALS;
    return row.map((w) => Math.floor(w * scale + 0.5)).join(",");
}

// sampling_math/weights.py with_one_hot_rows: the exemplar chains are always present, once and
// exactly one-hot (they come first); other rows with the same key are kept once.
export function withOneHotRows(rows, numRewards) {
    const unique = new Map();
    for (const row of [...oneHotRows(numRewards), ...rows]) {
        const key = rowKey(row);
        if (!unique.has(key)) unique.set(key, row);
    }
    if (unique.size > MAX_WEIGHT_ROWS) throw tooManyRows(unique.size);
    return orderRows([...unique.values()]);
}

// sampling_math/weights.py resolve_weights: typed rows, or the grid when the text is empty.
export function resolveWeights(text, numRewards, gridDivisions) {
    const rows = (text || "").trim() ? parseWeightRows(text, numRewards) : simplexGrid(numRewards, gridDivisions);
    return withOneHotRows(rows, numRewards);
}

// How many sampling steps a scheduler really makes: steps, except ComfyUI's ddim_uniform, which
// strides over the model's 1000 training sigmas (comfy/samplers.py ddim_scheduler) and can make more.
export function schedulerSteps(scheduler, steps) {
    if (scheduler !== "ddim_uniform") return steps;
    const stride = Math.max(Math.floor(1000 / steps), 1);
    return Math.ceil(999 / stride);
}

// Steps that SRSoup guides: sampling_math/guidance.py guided_step_indices. With eta = 1 every
// step has noise except the last (sigma_next = 0), for k-diffusion and rectified-flow alike; the
// schedulers give steps + 1 sigmas.
export function guidedSteps(steps, guidedStart, guidedEnd) {
    const end = Math.min(guidedEnd, steps - 1);
    return Math.max(0, end - Math.max(guidedStart, 0));
}

// sampling_math/weights.py exemplar_indices: for each reward, its one-hot row.
function exemplarIndices(rows) {
    return rows[0].map((_, m) => rows.findIndex((row) => row[m] === 1 && row.reduce((a, w) => a + w, 0) === 1));
}

// sampling_math/soup_schedule.py distance_to_one_hot: the distance of a row to its nearest one-hot
// row, 1 at the centroid: sqrt(max(0, sum w^2 - 2 max w + 1) / (1 - 1/M)), at most 1; 0 when M = 1.
export function distanceToOneHot(row) {
    if (row.length === 1) return 0;
    const squared = row.reduce((a, w) => a + w * w, 0) - 2 * Math.max(...row) + 1;
    return Math.min(1, Math.sqrt(Math.max(0, squared) / (1 - 1 / row.length)));
}

// sampling_math/soup_schedule.py per_chain_soup_steps: K_l = T_g (c + (e - c)(1 - dist_l)), half up.
export function perChainSoupSteps(rows, guided, centre, edge) {
    return rows.map((row) => Math.floor(guided * (centre + (edge - centre) * (1 - distanceToOneHot(row))) + 0.5));
}

// sampling_math/guidance.py GuidanceSettings.can_soup and chain_soup_steps: each chain's K; the
// exemplars never soup; a fixed K above the guided steps soups all of them (fixed_soup_steps).
export function chainSoupSteps({ rows, mode, soupSchedule, soupSteps, soupCentre, soupEdge, guided }) {
    const fixed = soupSchedule !== "per_chain";
    const canSoup = mode === "srsoup" && (fixed ? soupSteps > 0 : soupCentre > 0 || soupEdge > 0);
    if (!canSoup) return rows.map(() => 0);
    const steps = fixed
        ? rows.map(() => Math.min(soupSteps, guided))
        : perChainSoupSteps(rows, guided, soupCentre, soupEdge);
    for (const exemplar of exemplarIndices(rows)) steps[exemplar] = 0;
    return steps;
}

// sampling_math/ledger.py reward_support and guidance_cost: chain l soups its first K_l guided
// steps, then queries every reward it weighs on its own N candidates.
export function guidanceCost(rows, candidates, guided, soupSteps = null) {
    const own = rows.map((_, l) => guided - (soupSteps ? soupSteps[l] : 0));
    const queries = rows.reduce((total, row, l) => total + row.filter((w) => w > 0).length * own[l], 0);
    return [candidates * queries, candidates * own.reduce((a, b) => a + b, 0)];
}

// sampling_math/ledger.py weighted_sum_cost.
export function weightedSumCost(rows, candidates, guided) {
    return guidanceCost(rows, candidates, guided);
}

// Everything the node shows before a run, or the first problem the server would refuse the
// settings for (same words as sampling_math/guidance.py validate_settings).
export function estimate(settings) {
    const { weightsText, numRewards, gridDivisions, mode, candidates, soupSteps, guidedStart, guidedEnd } = settings;
    const schedule = {
        mode,
        soupSteps,
        soupSchedule: settings.soupSchedule ?? "fixed",
        soupCentre: settings.soupCentre ?? 0.05,
        soupEdge: settings.soupEdge ?? 0.8,
    };
    const steps = schedulerSteps(settings.scheduler ?? "normal", settings.steps);
    const rows = resolveWeights(weightsText, numRewards, gridDivisions);
    if (candidates < 2) {
        throw new WeightsError(`candidates (N) must be at least 2 to compare rewards, got ${candidates}`);
    }
    if (guidedEnd <= guidedStart) {
        throw new WeightsError(`guided steps: end (${guidedEnd}) must be after start (${guidedStart})`);
    }
    for (const [name, value] of [["soup_centre", schedule.soupCentre], ["soup_edge", schedule.soupEdge]]) {
        if (!(value >= 0 && value <= 1)) {
            throw new WeightsError(`${name} is ${value}; give a fraction of the guided steps from 0 to 1`);
        }
    }
    const fixed = mode === "srsoup" && schedule.soupSchedule !== "per_chain";
    if (fixed && soupSteps < 0) {
        throw new WeightsError(
            `soup_steps (K) is ${soupSteps}; choose K of 0 or more (a K above the guided steps soups all of them)`,
        );
    }
    const guided = guidedSteps(steps, guidedStart, guidedEnd);
    const chainRows = mode === "single" ? oneHotRows(numRewards) : rows;
    // report.py planned_cost: the chain rows (chain_weights), each with its own K.
    const chainSteps = chainSoupSteps({ rows: chainRows, guided, ...schedule });
    const [queries, passes] = guidanceCost(chainRows, candidates, guided, chainSteps);
    // The report's baseline is weighted sum over all rows (report.py guided_report).
    const [wsQueries, wsPasses] = weightedSumCost(rows, candidates, guided);
    // report.py final_scoring_queries: every final image is scored once by every reward.
    const finalScoring = chainRows.length * numRewards;
    return {
        images: chainRows.length,
        guided_steps: guided,
        queries,
        lookahead_passes: passes,
        weighted_sum_queries: wsQueries,
        weighted_sum_lookahead_passes: wsPasses,
        final_scoring_queries: finalScoring,
        total_queries: queries + finalScoring,
        chain_soup_steps: chainSteps,
        soup_steps_K: fixed ? Math.min(soupSteps, guided) : mode === "srsoup" ? null : 0,
    };
}

// The simplex sliders: moving one weight to `value` rescales the others in proportion so that the
// row still sums to 1; if the others are all zero they share what is left equally.
export function setWeight(row, index, value) {
    const v = Math.min(1, Math.max(0, Number(value)));
    if (row.length === 1) return [1];
    const others = row.reduce((s, w, i) => (i === index ? s : s + w), 0);
    return row.map((w, i) => {
        if (i === index) return v;
        return others > 0 ? (w * (1 - v)) / others : (1 - v) / (row.length - 1);
    });
}

// Rows as the weights text: one row per line, values rounded to 4 decimals (the parser
// normalises again, so rounding never leaves the simplex by more than 1e-4).
export function formatRows(rows) {
    return rows.map((row) => row.map((w) => String(Number(w.toFixed(4)))).join(", ")).join("\n");
}

// Round a simplex row to multiples of `unit` (e.g. a float widget's 0.01) so that it still sums to
// exactly 1: floor every weight, then give the units left to the largest remainders.
export function roundOnSimplex(row, unit) {
    const total = Math.round(1 / unit);
    const scaled = row.map((w) => w * total);
    const floors = scaled.map((x) => Math.floor(x + 1e-9));
    let left = total - floors.reduce((a, b) => a + b, 0);
    const order = scaled.map((x, i) => [x - floors[i], i]).sort((a, b) => b[0] - a[0]);
    for (const [, i] of order) {
        if (left <= 0) break;
        floors[i] += 1;
        left -= 1;
    }
    const digits = Math.max(0, Math.ceil(-Math.log10(unit)));
    return floors.map((f) => Number((f / total).toFixed(digits)));
}
