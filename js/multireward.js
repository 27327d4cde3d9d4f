// multireward frontend: a weights editor, a live reward-query estimate, an invalid-row marker and a
// last-run status line on the SRSoup nodes; a simplex "balance" editor on the Diffusion Blend nodes.
//
// Dependency-free on purpose (ComfyUI loads js/ as plain ES modules, no build step). All text that
// comes from a node, a user or the server is written with textContent or into widget values: never
// as HTML. The maths lives in weights.js, which mirrors sampling_math/ line by line. What a node is
// made of (its reward inputs, its LoRA slots and their empty choice) is read from its definition,
// and what a run cost from the structured ui output the node sends (`multireward_run`).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import * as W from "./weights.js";

const SRSOUP_NODES = new Set(["MultiReward_SRSoupKSampler", "MultiReward_SRSoupSampler"]);
const ESTIMATED_NODES = new Set(["MultiReward_SRSoupKSampler"]); // the only one that knows its steps
const BLEND_NODES = new Set([
    "MultiReward_DiffusionBlend",
    "MultiReward_DiffusionBlendSampler",
    "MultiReward_LoRAStochasticMixer",
]);
const REWARD_TYPE = "MULTIREWARD_REWARD"; // pack_nodes/types.py RewardType
const PANEL = "multireward_panel";
const COLORS = { text: "#c8c8c8", dim: "#8a8a8a", error: "#ff6b6b", ok: "#7fd67f" };

// For the browser tests and for users poking in the console.
window.MultiReward = { ...W, describeNode };

function widget(node, name) {
    return node.widgets?.find((w) => w.name === name);
}

// [{name, type, options}] of a node definition's inputs, required then optional, in declared order.
function declaredInputs(nodeData) {
    const order = nodeData.input_order ?? {};
    const inputs = [];
    for (const group of ["required", "optional"]) {
        const specs = nodeData.input?.[group] ?? {};
        for (const name of order[group] ?? Object.keys(specs)) {
            const [type, options = {}] = specs[name] ?? [];
            inputs.push({ name, type, options });
        }
    }
    return inputs;
}

// What the panels need to know of a node type, from its definition: the reward inputs (by their
// socket type) and the LoRA slots (lora_k with its weight_k; the value a slot holds when empty is
// its declared default, "(none)", and a slot without a default is never empty).
function describeNode(nodeData) {
    const inputs = declaredInputs(nodeData);
    const names = new Set(inputs.map((i) => i.name));
    return {
        rewardInputs: inputs.filter((i) => i.type === REWARD_TYPE).map((i) => i.name),
        loraSlots: inputs
            .filter((i) => /^lora_\d+$/.test(i.name) && names.has(i.name.replace("lora_", "weight_")))
            .map((i) => ({ lora: i.name, weight: i.name.replace("lora_", "weight_"), empty: i.options.default ?? null })),
    };
}

// The reward inputs that are connected (isInputConnected: `input.link` is deprecated since frontend 1.5x).
function rewardLinks(node) {
    const names = new Set(node.multirewardDef?.rewardInputs ?? []);
    return (node.inputs ?? []).filter((input, slot) => names.has(input.name) && node.isInputConnected(slot));
}

function connectedRewards(node) {
    return rewardLinks(node).length;
}

// Column titles for the sliders: the reward a Reward Loader loads, else the input's name.
function rewardLabels(node) {
    return rewardLinks(node).map((input) => {
        const source = node.getInputNode?.(node.inputs.indexOf(input));
        return String(widget(source ?? {}, "reward_name")?.value ?? input.name);
    });
}

function el(tag, style = {}, text = "") {
    const e = document.createElement(tag);
    Object.assign(e.style, style);
    if (text) e.textContent = text;
    return e;
}

// Call `after` whenever `target[name]` (a callback) would be called, keeping what was there.
function chain(target, name, after) {
    const before = target[name];
    target[name] = function (...args) {
        const result = before?.apply(this, args);
        after.apply(this, args);
        return result;
    };
}

// The element on screen that edits widget `w`, or null. Classic canvas: the DOM widget's own element
// (`widget.element`; `inputEl` is deprecated since frontend 1.5x). Nodes 2.0 (Vue) draws its own
// field for a text widget inside the node's element, named by the widget (a <label> in 1.58, an
// aria-label in 1.32), and leaves widget.element detached; it is found by that accessible name.
function elementOnScreen(node, w) {
    if (!w) return null;
    if (w.element?.isConnected) return w.element;
    const name = w.label ?? w.name;
    const named = (field) =>
        field.getAttribute("aria-label") === name || [...(field.labels ?? [])].some((l) => l.textContent.trim() === name);
    const fields = document.querySelectorAll(`[data-node-id="${node.id}"] :is(textarea, input)`);
    return [...fields].find((field) => !field.closest(".multireward-panel") && named(field)) ?? null;
}

// Values can change without any callback (another extension sets widget.value, undo, paste), and
// Nodes 2.0 never calls onDrawForeground, so the SRSoup panels are polled: one JSON.stringify of a
// node's settings four times a second, in both modes; nothing runs while no SRSoup node exists.
const WATCHED_PANELS = new Set();
let watchTimer = null;

function watch(panel) {
    WATCHED_PANELS.add(panel);
    watchTimer ??= setInterval(() => {
        for (const watched of WATCHED_PANELS) watched.poll();
    }, 250);
}

function unwatch(panel) {
    WATCHED_PANELS.delete(panel);
    if (!WATCHED_PANELS.size && watchTimer != null) {
        clearInterval(watchTimer);
        watchTimer = null;
    }
}

// A DOM widget that is never saved in the workflow nor sent in the prompt (serialize false both
// ways), so widgets_values keep their positions and old workflows load unchanged.
function addPanel(node, root, heightOf) {
    const panel = node.addDOMWidget(PANEL, "multireward", root, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => heightOf(),
        getMaxHeight: () => heightOf(),
    });
    panel.serialize = false;
    return panel;
}

// Grow the node when the panel grows (the editor opens, a row is added); never shrink what a
// user sized by hand.
function fitNode(node) {
    const [w, h] = node.computeSize();
    node.setSize([Math.max(node.size[0], w), Math.max(node.size[1], h)]);
    node.setDirtyCanvas(true, true);
}

function fmt(w) {
    return String(Number(w.toFixed(3)));
}

function sliderRow(values, onInput, onRemove) {
    const line = el("div", { display: "flex", alignItems: "center", gap: "4px", margin: "2px 0" });
    line.className = "mr-row";
    values.forEach((v, i) => {
        const slider = el("input", { flex: "1", minWidth: "40px" });
        Object.assign(slider, { type: "range", min: "0", max: "1", step: "0.01", value: String(v) });
        slider.className = "mr-slider";
        slider.dataset.index = String(i);
        const label = el("span", { width: "34px", color: COLORS.text, fontSize: "11px" }, fmt(v));
        label.className = "mr-value";
        slider.addEventListener("input", () => onInput(i, Number(slider.value)));
        line.append(slider, label);
    });
    if (onRemove) {
        const remove = el("button", { fontSize: "11px", padding: "0 4px" }, "−");
        remove.title = "Remove this row";
        remove.className = "mr-remove";
        remove.addEventListener("click", onRemove);
        line.append(remove);
    }
    return line;
}

function updateSliderRow(line, values) {
    line.querySelectorAll(".mr-slider").forEach((s, i) => (s.value = String(values[i])));
    line.querySelectorAll(".mr-value").forEach((s, i) => (s.textContent = fmt(values[i])));
}

// ---------------------------------------------------------------------------------------------
// SRSoup nodes
// ---------------------------------------------------------------------------------------------

// The estimate as the node shows it: guidance queries against weighted sum, the total the judges
// see with the final scoring (pack_nodes/srsoup.py summary says the same after the run), and how
// long each chain soups.
function estimateText(s, e) {
    const saving = e.queries ? `, ${(e.weighted_sum_queries / e.queries).toFixed(2)}x fewer` : "";
    const lines = [
        `estimate: ${e.queries} reward queries (weighted sum: ${e.weighted_sum_queries}${saving})`,
        `in all, with the final scoring: ${e.total_queries} (+ ${e.final_scoring_queries}: each image once by every reward)`,
        `${e.lookahead_passes} look-ahead passes, ${e.images} images, ${e.guided_steps} guided steps`,
    ];
    if (s.mode === "srsoup" && s.soupSchedule === "per_chain") {
        const ks = e.chain_soup_steps;
        const shown = ks.length <= 21 ? ks.join(", ") : `${Math.min(...ks)} to ${Math.max(...ks)}`;
        lines.push(`K per image (soup steps): ${shown}`);
    } else if (s.mode === "srsoup" && s.soupSteps > e.guided_steps) {
        lines.push(`K = ${s.soupSteps} is more than the ${e.guided_steps} guided steps: chains soup all of them`);
    }
    return lines.join("\n");
}

class SRSoupPanel {
    constructor(node) {
        this.node = node;
        this.open = false;
        this.rows = null; // the editor's rows while it is open (authoritative while dragging)
        this.written = null; // the weights text the sliders show (the editor's own last write, or parsed)
        this.lastRun = null;
        this.started = null;

        this.root = el("div", { fontFamily: "sans-serif", fontSize: "12px", color: COLORS.text, overflow: "hidden" });
        this.root.className = "multireward-panel";
        this.estimateLine = el("div", { whiteSpace: "pre-wrap" });
        this.estimateLine.className = "mr-estimate";
        this.errorLine = el("div", { color: COLORS.error, whiteSpace: "pre-wrap" });
        this.errorLine.className = "mr-error";
        this.statusLine = el("div", { color: COLORS.ok, whiteSpace: "pre-wrap" });
        this.statusLine.className = "mr-status";
        this.toggle = el("button", { fontSize: "11px", margin: "2px 0" }, "Edit weights ▸");
        this.toggle.className = "mr-toggle";
        this.toggle.addEventListener("click", () => {
            this.open = !this.open;
            this.rows = null;
            this.refresh(true);
        });
        this.editor = el("div");
        this.editor.className = "mr-editor";
        this.root.append(this.estimateLine, this.errorLine, this.statusLine, this.toggle, this.editor);
        this.marked = null; // the element outlined as invalid
        this.widget = addPanel(node, this.root, () => this.height());
        this.hook();
        this.refresh(true);
    }

    height() {
        // Measured layout is not available before the element is attached; count lines instead.
        const lines = [this.estimateLine, this.errorLine, this.statusLine].reduce(
            (n, e) => n + (e.textContent ? e.textContent.split("\n").length : 0),
            0,
        );
        const editor = this.open ? 46 + 22 * this.editor.querySelectorAll(".mr-row, .mr-list").length : 0;
        return 34 + 16 * lines + editor;
    }

    hook() {
        const node = this.node;
        // Every widget that changes the estimate or the rows; the multiline weights textarea calls
        // its callback on each keystroke, so a bad row is marked as it is typed.
        const watched = [
            "weights", "grid_divisions", "mode", "candidates", "soup_steps",
            "steps", "scheduler", "guided_start", "guided_end",
            "soup_schedule", "soup_centre", "soup_edge",
        ];
        for (const name of watched) {
            const w = widget(node, name);
            if (w) chain(w, "callback", () => this.changed());
        }
        chain(node, "onConnectionsChange", () => this.refresh(true));
        chain(node, "onConfigure", () => setTimeout(() => this.changed(), 0));
        chain(node, "onRemoved", () => unwatch(this));
        watch(this);
    }

    // Called by the watcher: catch values set without a callback, and keep the invalid mark on the
    // weights box (Nodes 2.0 may re-create its textarea, e.g. after collapsing the node).
    poll() {
        if (!this.node.graph) return; // not in a graph yet
        if (this.signature() !== this.seen) this.changed();
        else this.markWeights();
    }

    // Outline the weights box on screen while the error is about a weights row, and say so to
    // assistive technology (aria-invalid, which 1.58's Nodes 2.0 field also draws as a red ring).
    markWeights() {
        const target = this.error?.startsWith("weights") ? elementOnScreen(this.node, widget(this.node, "weights")) : null;
        if (this.marked && this.marked !== target) {
            this.marked.style.outline = "";
            this.marked.style.outlineOffset = "";
            this.marked.removeAttribute("aria-invalid");
        }
        if (target && target.style.outline === "") {
            // Drawn inside the box: a node that clips its content (Nodes 2.0) cannot hide it.
            target.style.outline = `2px solid ${COLORS.error}`;
            target.style.outlineOffset = "-2px";
            target.setAttribute("aria-invalid", "true");
        }
        this.marked = target;
    }

    // A widget changed. If the weights text changed and not by the editor's own hand (typed,
    // pasted, loaded), the sliders are rebuilt from it; the editor's own writes never rebuild them,
    // which would drop a slider in mid-drag.
    changed() {
        const typed = this.weightsText() !== this.written;
        if (typed) {
            this.rows = null;
            this.written = this.weightsText();
        }
        this.refresh(typed);
    }

    weightsText() {
        return String(widget(this.node, "weights")?.value ?? "");
    }

    value(name, fallback) {
        const w = widget(this.node, name);
        return w ? w.value : fallback;
    }

    settings() {
        return {
            weightsText: this.weightsText(),
            numRewards: connectedRewards(this.node),
            gridDivisions: Number(this.value("grid_divisions", 5)),
            mode: String(this.value("mode", "srsoup")),
            candidates: Number(this.value("candidates", 30)),
            soupSteps: Number(this.value("soup_steps", 20)),
            // A node without the schedule widgets (an older pack) runs the fixed schedule.
            soupSchedule: String(this.value("soup_schedule", "fixed")),
            soupCentre: Number(this.value("soup_centre", 0.05)),
            soupEdge: Number(this.value("soup_edge", 0.8)),
            steps: Number(this.value("steps", 50)),
            scheduler: String(this.value("scheduler", "normal")),
            guidedStart: Number(this.value("guided_start", 0)),
            guidedEnd: Number(this.value("guided_end", 10000)),
        };
    }

    signature() {
        return JSON.stringify(this.settings());
    }

    // Recompute the estimate and the error line; rebuild the editor when asked (not while a
    // slider is being dragged: that would drop the drag).
    refresh(rebuild = false) {
        const s = this.settings();
        this.seen = JSON.stringify(s);
        this.root.dataset.nodeId = String(this.node.id); // ids are given when the node joins a graph
        this.node.multireward = { settings: s, estimate: null, error: null, lastRun: this.lastRun };
        let error = "";
        if (s.numRewards === 0) {
            this.estimateLine.textContent = "connect a reward to see the cost";
        } else {
            try {
                if (ESTIMATED_NODES.has(this.node.comfyClass)) {
                    const e = W.estimate(s);
                    this.node.multireward.estimate = e;
                    this.estimateLine.textContent = estimateText(s, e);
                } else {
                    const rows = W.resolveWeights(s.weightsText, s.numRewards, s.gridDivisions);
                    this.estimateLine.textContent = `${rows.length} images; cost per guided step depends on the sigmas`;
                }
            } catch (e) {
                // WeightsError carries the server's words; anything else is shown too rather than
                // thrown, since this also runs while the canvas draws.
                error = e instanceof W.WeightsError ? e.message : `multireward: ${e}`;
                this.estimateLine.textContent = "estimate: fix the input below";
            }
        }
        this.node.multireward.error = error || null;
        this.error = error;
        this.errorLine.textContent = error;
        this.markWeights();
        this.statusLine.textContent = this.lastRun ?? "";
        this.toggle.textContent = this.open ? "Edit weights ▾" : "Edit weights ▸";
        if (rebuild) this.buildEditor(s);
        fitNode(this.node);
    }

    buildEditor(s) {
        this.editor.replaceChildren();
        if (!this.open) return;
        if (s.numRewards < 2) {
            this.editor.append(el("div", { color: COLORS.dim }, "connect two or more rewards to weigh them"));
            return;
        }
        if (!s.weightsText.trim()) {
            this.gridView(s);
            return;
        }
        let rows = this.rows;
        if (!rows || rows[0]?.length !== s.numRewards) {
            try {
                rows = W.parseWeightRows(s.weightsText, s.numRewards);
            } catch {
                this.editor.append(el("div", { color: COLORS.dim }, "fix the weights text to edit it here"));
                return;
            }
        }
        this.rows = rows;
        const header = el("div", { display: "flex", gap: "4px", color: COLORS.dim, fontSize: "11px" });
        header.className = "mr-header";
        for (const label of rewardLabels(this.node)) {
            const title = el("span", { flex: "1", overflow: "hidden", textOverflow: "ellipsis" }, label);
            header.append(title);
        }
        header.append(el("span", { width: "22px" }));
        this.editor.append(header);
        rows.forEach((row, r) => {
            const line = sliderRow(
                row,
                (i, v) => {
                    this.rows[r] = W.setWeight(this.rows[r], i, v);
                    updateSliderRow(line, this.rows[r]);
                    this.write();
                },
                rows.length > 1
                    ? () => {
                          this.rows.splice(r, 1);
                          this.write();
                          this.refresh(true);
                      }
                    : null,
            );
            this.editor.append(line);
        });
        const buttons = el("div", { display: "flex", gap: "4px", marginTop: "2px" });
        const add = el("button", { fontSize: "11px" }, "+ row");
        add.className = "mr-add";
        add.title = "Add a row with equal weights";
        add.addEventListener("click", () => {
            this.rows.push(Array(s.numRewards).fill(1 / s.numRewards));
            this.write();
            this.refresh(true);
        });
        const grid = el("button", { fontSize: "11px" }, "use grid");
        grid.className = "mr-use-grid";
        grid.title = "Empty the weights text: the simplex grid of grid_divisions is used";
        grid.addEventListener("click", () => this.setText(""));
        buttons.append(add, grid);
        this.editor.append(buttons);
    }

    // With no typed rows the grid is used: show its rows, and offer to turn them into rows.
    gridView(s) {
        const rows = W.resolveWeights("", s.numRewards, s.gridDivisions);
        const list = el(
            "div",
            { color: COLORS.dim, whiteSpace: "pre-wrap" },
            `grid (${s.gridDivisions} divisions): ` + rows.map((r) => `(${r.map(fmt).join(", ")})`).join(" "),
        );
        list.className = "mr-list";
        const edit = el("button", { fontSize: "11px" }, "edit as rows");
        edit.className = "mr-edit-rows";
        edit.addEventListener("click", () => {
            this.rows = null;
            this.setText(W.formatRows(rows));
        });
        this.editor.append(list, edit);
    }

    write() {
        this.written = W.formatRows(this.rows);
        const w = widget(this.node, "weights");
        w.value = this.written; // the DOM widget's setter calls its callback: the estimate follows
        this.refresh(false);
    }

    setText(text) {
        this.written = null;
        widget(this.node, "weights").value = text;
        this.refresh(true);
    }

    // From the node's executed message: its ui output `multireward_run` (pack_nodes/srsoup.py
    // run_ui) carries the run's numbers. SRSoup Sampler runs inside SamplerCustomAdvanced and sends
    // none; its time is measured here from the node's start.
    executed(message) {
        const run = message?.multireward_run?.[0] ?? null;
        const measured = this.started ? (performance.now() - this.started) / 1000 : null;
        const seconds = run && Number.isFinite(run.seconds) ? run.seconds : measured;
        const parts = [];
        if (run) parts.push(`${run.queries} reward queries (weighted sum: ${run.weighted_sum_queries})`);
        if (Number.isFinite(run?.total_queries)) parts.push(`${run.total_queries} with the final scores`);
        if (seconds != null) parts.push(`${seconds.toFixed(1)} s`);
        this.lastRun = parts.length ? `last run: ${parts.join(", ")}` : "last run: done";
        this.lastQueries = run ? { queries: run.queries, weighted_sum_queries: run.weighted_sum_queries } : null;
        this.started = null;
        this.refresh(false);
        this.node.multireward.lastRunQueries = this.lastQueries;
    }
}

// ---------------------------------------------------------------------------------------------
// Diffusion Blend nodes: weight_1..4 of the chosen LoRAs, balanced on the simplex
// ---------------------------------------------------------------------------------------------

class BlendPanel {
    constructor(node) {
        this.node = node;
        this.root = el("div", { fontFamily: "sans-serif", fontSize: "12px", color: COLORS.text, overflow: "hidden" });
        this.root.className = "multireward-panel";
        this.title = el("div", { color: COLORS.dim });
        this.sliders = el("div");
        this.root.append(this.title, this.sliders);
        this.widget = addPanel(node, this.root, () => 22 + 22 * this.slots().length);
        for (const slot of node.multirewardDef?.loraSlots ?? []) {
            const lora = widget(node, slot.lora);
            if (lora) chain(lora, "callback", () => this.build());
        }
        chain(node, "onConfigure", () => setTimeout(() => this.build(), 0));
        this.build();
    }

    // The LoRA slots that hold a LoRA (a value other than the slot's empty choice).
    slots() {
        return (this.node.multirewardDef?.loraSlots ?? []).filter((slot) => {
            const lora = widget(this.node, slot.lora);
            return lora?.value && lora.value !== slot.empty && widget(this.node, slot.weight);
        });
    }

    build() {
        this.root.dataset.nodeId = String(this.node.id);
        const slots = this.slots();
        this.sliders.replaceChildren();
        this.title.textContent = slots.length >= 2 ? "balance on the simplex (sum = 1):" : "choose two LoRAs to balance them";
        if (slots.length >= 2) {
            const weights = slots.map((slot) => Math.max(0, Number(widget(this.node, slot.weight).value)));
            const total = weights.reduce((a, b) => a + b, 0);
            let row = total > 0 ? weights.map((w) => w / total) : weights.map(() => 1 / slots.length);
            const line = sliderRow(row, (i, v) => {
                row = W.setWeight(row, i, v);
                updateSliderRow(line, row);
                // The float widgets round to their own precision (0.01 here); round the whole row
                // to it first so the weights the node receives still sum to 1.
                const first = widget(this.node, slots[0].weight);
                const unit = first.options?.round || 10 ** -(first.options?.precision ?? 4);
                const rounded = W.roundOnSimplex(row, unit);
                slots.forEach((slot, j) => {
                    const w = widget(this.node, slot.weight);
                    w.value = rounded[j];
                    w.callback?.(w.value);
                });
                this.node.setDirtyCanvas(true, true);
            });
            this.sliders.append(line);
        }
        fitNode(this.node);
    }
}

// ---------------------------------------------------------------------------------------------

app.registerExtension({
    name: "multireward.frontend",

    async nodeCreated(node) {
        if (SRSOUP_NODES.has(node.comfyClass)) {
            node.multirewardPanel = new SRSoupPanel(node);
        } else if (BLEND_NODES.has(node.comfyClass)) {
            node.multirewardPanel = new BlendPanel(node);
        }
    },

    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!SRSOUP_NODES.has(nodeData.name) && !BLEND_NODES.has(nodeData.name)) return;
        nodeType.prototype.multirewardDef = describeNode(nodeData);
        if (!SRSOUP_NODES.has(nodeData.name)) return;
        chain(nodeType.prototype, "onExecuted", function (message) {
            this.multirewardPanel?.executed(message);
        });
    },

    async setup() {
        // Client-side timing for the status line, for runs that send no time of their own.
        api.addEventListener("executing", ({ detail }) => {
            const id = typeof detail === "object" && detail ? detail.node : detail;
            const node = id != null ? app.graph?.getNodeById?.(Number(id)) : null;
            if (node?.multirewardPanel instanceof SRSoupPanel) node.multirewardPanel.started = performance.now();
        });
    },
});
