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

// What Python's float() accepts (digits with single underscores, a point, an exponent, inf/nan),
// so that "0x10" or "1__0" is refused here exactly when the server would refuse it.
const DIGITS = "\\d(?:_?\\d)*";
const PY_FLOAT = new RegExp(
    `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`,
    "i",
);

export class WeightsError extends Error {}

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

// sampling_math/weights.py parse_weight_rows: rows checked one by one, each normalised to sum 1.
export function parseWeightRows(text, numRewards) {
    const rows = [];
    const chunks = text.split(ROW_SEPARATORS).filter((part) => part.trim());
    chunks.forEach((chunk, index) => {
        const values = chunk.trim().split(VALUE_SEPARATORS).filter((v) => v);
        rows.push(validateRow(values, numRewards, index + 1, chunk.trim()));
    });
    if (!rows.length) {
        throw new WeightsError(
            "weights: no weight rows given; write rows like '1,0; 0.5,0.5; 0,1' or leave it empty for a grid",
        );
    }
    if (rows.length < numRewards) {
        throw new WeightsError(
            `weights: ${rows.length} weight row(s) for ${numRewards} rewards; give at least one row per reward ` +
                "(rows are separated by ';' or new lines)",
        );
    }
    return rows;
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

// torch.allclose(a, b, atol=1e-9) with its default rtol=1e-5, as with_one_hot_rows uses it.
function allClose(a, b) {
    return a.every((x, i) => Math.abs(x - b[i]) <= 1e-9 + 1e-5 * Math.abs(b[i]));
}

// sampling_math/weights.py with_one_hot_rows: the exemplar chains are always present, once.
export function withOneHotRows(rows, numRewards) {
    const unique = [];
    for (const row of [...rows, ...oneHotRows(numRewards)]) {
        if (!unique.some((seen) => allClose(row, seen))) unique.push(row);
    }
    return orderRows(unique);
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

// sampling_math/ledger.py: weighted_sum_cost, srsoup_cost, single_cost; report.py planned_cost.
function support(rows) {
    return rows.reduce((total, row) => total + row.filter((w) => w > 0).length, 0);
}

export function weightedSumCost(rows, candidates, guided) {
    return [candidates * support(rows) * guided, candidates * rows.length * guided];
}

export function plannedCost({ rows, numRewards, mode, candidates, soupSteps, guided }) {
    if (mode === "single") {
        const cost = candidates * numRewards * guided;
        return [cost, cost];
    }
    if (mode === "srsoup") {
        const [restQueries, restPasses] = weightedSumCost(rows, candidates, guided - soupSteps);
        const soup = candidates * numRewards * soupSteps;
        return [soup + restQueries, soup + restPasses];
    }
    return weightedSumCost(rows, candidates, guided);
}

// Everything the node shows before a run, or the first problem the server would refuse the
// settings for (same words as sampling_math/guidance.py validate_settings).
export function estimate(settings) {
    const { weightsText, numRewards, gridDivisions, mode, candidates, soupSteps, guidedStart, guidedEnd } = settings;
    const steps = schedulerSteps(settings.scheduler ?? "normal", settings.steps);
    const rows = resolveWeights(weightsText, numRewards, gridDivisions);
    if (candidates < 2) {
        throw new WeightsError(`candidates (N) must be at least 2 to compare rewards, got ${candidates}`);
    }
    if (guidedEnd <= guidedStart) {
        throw new WeightsError(`guided steps: end (${guidedEnd}) must be after start (${guidedStart})`);
    }
    const guided = guidedSteps(steps, guidedStart, guidedEnd);
    if (mode === "srsoup" && !(soupSteps >= 0 && soupSteps <= guided)) {
        throw new WeightsError(
            `soup_steps (K) is ${soupSteps} but there are only ${guided} guided steps ` +
                "(the last step has no noise and is never guided); choose K between 0 and the guided steps",
        );
    }
    const chainRows = mode === "single" ? oneHotRows(numRewards) : rows;
    const [queries, passes] = plannedCost({ rows: chainRows, numRewards, mode, candidates, soupSteps, guided });
    // The report's baseline is weighted sum over all rows (report.py guided_report).
    const [wsQueries, wsPasses] = weightedSumCost(rows, candidates, guided);
    return {
        images: chainRows.length,
        guided_steps: guided,
        queries,
        lookahead_passes: passes,
        weighted_sum_queries: wsQueries,
        weighted_sum_lookahead_passes: wsPasses,
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
