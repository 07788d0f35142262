// VAE Lab: the comparison viewer — synchronized zoom/pan, fit and 1:1, keyboard, a synced
// loupe, the before/after divider and flicker key, numeric table sort, the VAE list's
// filter and select all/none, and the crop box for the "zoomed region" export.
//
// A classic script. Inside A1111 it is loaded with every extension's javascript/*.js; the
// standalone app runs it once on page load. All listeners are delegated from the document
// (or A1111's gradioApp() root), so views that Gradio re-renders keep working without
// re-binding.
//
// Every `.vae-lab-sync` container is one zoom group: the `.vae-lab-zoom` images inside it
// share one transform `translate(x, y) scale(s)` (origin top-left, in frame pixels; s = 1 is
// "fit"). The state is kept per view name (`data-view`), not per element, so a new run's
// images open at the zoom the previous ones had.
//
// Keys (when the pointer is over a view, or a view has focus): + / − zoom, 0 fit, 1 one
// image pixel per screen pixel, arrows pan (Shift: more), L loupe, F flicker A/B.
(function () {
    "use strict";
    if (window.vaeLab) return; // loaded twice (WebUI + app injection): keep the first
    var MIN = 1, MAX = 32, WHEEL_100PX = 1.2, KEY_STEP = 1.25, LOUPE_PX = 160;
    var states = {};  // view name -> {s, x, y}
    var loupeOn = {};  // view name -> bool
    var hovered = null; // the group under the pointer (keyboard target)

    function viewName(group) { return group.getAttribute("data-view") || "view"; }

    function stateOf(group) {
        var k = viewName(group);
        if (!states[k]) states[k] = {s: 1, x: 0, y: 0};
        return states[k];
    }

    function frames(group) { return group.querySelectorAll(".vae-lab-frame"); }
    function firstFrame(group) { return group.querySelector(".vae-lab-frame"); }
    function firstImg(group) { return group.querySelector("img.vae-lab-zoom"); }

    function clampPan(st, frame) {
        // keep the zoomed image covering the frame: no empty margins
        var w = frame.clientWidth, h = frame.clientHeight;
        st.x = Math.min(0, Math.max(w - w * st.s, st.x));
        st.y = Math.min(0, Math.max(h - h * st.s, st.y));
    }

    function maxScale(group) {
        // at least 32× fit, and at least 16 screen pixels per image pixel for big images
        var img = firstImg(group), frame = firstFrame(group);
        if (!img || !frame || !frame.clientWidth) return MAX;
        return Math.max(MAX, 16 * (img.naturalWidth || frame.clientWidth) / frame.clientWidth);
    }

    function pixelZoom(group) {
        // screen pixels per image pixel
        var img = firstImg(group), frame = firstFrame(group);
        if (!img || !frame || !img.naturalWidth) return null;
        return stateOf(group).s * frame.clientWidth / img.naturalWidth;
    }

    function toolsOf(group) {
        var wrap = group.closest(".vae-lab-view");
        return wrap ? wrap.querySelector(".vae-lab-tools") : null;
    }

    function apply(group) {
        var st = stateOf(group);
        var t = "translate(" + st.x + "px, " + st.y + "px) scale(" + st.s + ")";
        group.querySelectorAll(".vae-lab-zoom").forEach(function (img) { img.style.transform = t; });
        group.classList.toggle("vae-lab-zoomed", st.s > 1);
        group.classList.toggle("vae-lab-loupe-on", !!loupeOn[viewName(group)]);
        var tools = toolsOf(group);
        if (tools) {
            var px = pixelZoom(group), out = tools.querySelector(".vae-lab-readout");
            var pct = px === null ? "" : Math.round(px * 100) + "%";
            if (out) out.textContent = st.s === 1 ? "fit · " + pct : pct + " (" + st.s.toFixed(2) + "× fit)";
            var lb = tools.querySelector('[data-vae-lab="loupe"]');
            if (lb) lb.setAttribute("aria-pressed", loupeOn[viewName(group)] ? "true" : "false");
        }
    }

    function groupsNamed(name) {
        return Array.prototype.filter.call(root().querySelectorAll(".vae-lab-sync"),
            function (g) { return viewName(g) === name; });
    }

    function zoomAt(group, frame, clientX, clientY, factor) {
        var st = stateOf(group);
        var r = frame.getBoundingClientRect();
        var px = clientX - r.left, py = clientY - r.top;
        var s2 = Math.min(maxScale(group), Math.max(MIN, st.s * factor));
        // keep the point under the cursor still
        st.x = px - (px - st.x) * (s2 / st.s);
        st.y = py - (py - st.y) * (s2 / st.s);
        st.s = s2;
        clampPan(st, frame);
        apply(group);
    }

    function zoomCentre(group, factor) {
        var f = firstFrame(group);
        if (!f) return;
        var r = f.getBoundingClientRect();
        zoomAt(group, f, r.left + r.width / 2, r.top + r.height / 2, factor);
    }

    function setScale(group, s) {
        var st = stateOf(group);
        zoomCentre(group, s / st.s);
    }

    function fit(group) {
        var k = viewName(group);
        states[k] = {s: 1, x: 0, y: 0};
        apply(group);
    }

    function oneToOne(group) {
        var img = firstImg(group), f = firstFrame(group);
        if (!img || !f || !img.naturalWidth) return;
        setScale(group, Math.max(MIN, img.naturalWidth / f.clientWidth));
    }

    function pan(group, dx, dy) {
        var st = stateOf(group), f = firstFrame(group);
        if (!f) return;
        st.x += dx;
        st.y += dy;
        clampPan(st, f);
        apply(group);
    }

    function target(ev) {
        var el = ev.target;
        if (!el || !el.closest) return null;
        var frame = el.closest(".vae-lab-frame");
        var group = frame && frame.closest(".vae-lab-sync");
        return group ? {frame: frame, group: group} : null;
    }

    function wheelPixels(ev, frame) {
        // the wheel's distance in pixels, whatever unit the device reports it in
        if (ev.deltaMode === 1) return ev.deltaY * 16;
        if (ev.deltaMode === 2) return ev.deltaY * (frame.clientHeight || 400);
        return ev.deltaY;
    }

    function onWheel(ev) {
        var t = target(ev);
        if (!t) return;
        ev.preventDefault();
        // in proportion to the distance: a 100 px notch zooms 1.2×, a trackpad's 2 px 1.004×
        var factor = Math.pow(WHEEL_100PX, -wheelPixels(ev, t.frame) / 100);
        zoomAt(t.group, t.frame, ev.clientX, ev.clientY, factor);
    }

    // ---- the loupe: the same spot of every image of the group, magnified, at the pointer
    function loupeScale(group) {
        // at least 1:1 (one image pixel per screen pixel), and at least twice what is shown
        var px = pixelZoom(group) || 1;
        return Math.max(1, Math.ceil(2 * px));
    }

    function moveLoupe(group, frame, clientX, clientY) {
        var st = stateOf(group), r = frame.getBoundingClientRect();
        var img = frame.querySelector("img.vae-lab-zoom");
        if (!img || !img.naturalWidth) return;
        // the image point under the pointer, as a fraction of the image
        var fx = ((clientX - r.left) - st.x) / (st.s * r.width);
        var fy = ((clientY - r.top) - st.y) / (st.s * r.height);
        var m = loupeScale(group);
        frames(group).forEach(function (f) {
            var lp = f.querySelector(".vae-lab-loupe");
            var im = f.querySelector(".vae-lab-ba-top img.vae-lab-zoom") || f.querySelector("img.vae-lab-zoom");
            if (!lp || !im) return;
            var fr = f.getBoundingClientRect();
            var W = im.naturalWidth * m, H = im.naturalHeight * m;
            lp.style.left = (fx * st.s * fr.width + st.x - LOUPE_PX / 2) + "px";
            lp.style.top = (fy * st.s * fr.height + st.y - LOUPE_PX / 2) + "px";
            lp.style.backgroundImage = 'url("' + im.src + '")';
            lp.style.backgroundSize = W + "px " + H + "px";
            lp.style.backgroundPosition = (LOUPE_PX / 2 - fx * W) + "px " + (LOUPE_PX / 2 - fy * H) + "px";
            lp.setAttribute("data-at", fx.toFixed(4) + "," + fy.toFixed(4));
        });
    }

    function toggleLoupe(group) {
        var k = viewName(group);
        loupeOn[k] = !loupeOn[k];
        groupsNamed(k).forEach(apply);
    }

    // ---- before/after: the divider and the flicker key
    function setDivider(ba, pct) {
        pct = Math.min(100, Math.max(0, pct));
        ba.style.setProperty("--vae-lab-pos", pct + "%");
        var cell = ba.closest(".vae-lab-cell");
        var range = cell && cell.querySelector(".vae-lab-ba-range");
        if (range) range.value = String(Math.round(pct));
        ba.setAttribute("data-showing", pct >= 100 ? "A" : pct <= 0 ? "B" : "");
    }

    function flicker(group) {
        var ba = group.querySelector(".vae-lab-ba");
        if (!ba) return false;
        var now = ba.getAttribute("data-showing");
        setDivider(ba, now === "A" ? 0 : 100);
        return true;
    }

    var drag = null;
    function onDown(ev) {
        if (ev.button !== 0) return;
        var t = target(ev);
        if (!t) return;
        ev.preventDefault();
        hovered = t.group;
        var ba = ev.target.closest(".vae-lab-ba");
        if (ba && ev.target.closest(".vae-lab-ba-handle")) {
            drag = {divider: ba};
            return;
        }
        drag = {group: t.group, frame: t.frame, x: ev.clientX, y: ev.clientY};
        t.group.classList.add("vae-lab-dragging");
    }
    function onMove(ev) {
        if (drag && drag.divider) {
            var r = drag.divider.getBoundingClientRect();
            setDivider(drag.divider, (ev.clientX - r.left) / r.width * 100);
            return;
        }
        if (drag) {
            var st = stateOf(drag.group);
            st.x += ev.clientX - drag.x;
            st.y += ev.clientY - drag.y;
            drag.x = ev.clientX;
            drag.y = ev.clientY;
            clampPan(st, drag.frame);
            apply(drag.group);
            return;
        }
        var t = target(ev);
        if (t) {
            hovered = t.group;
            if (loupeOn[viewName(t.group)]) moveLoupe(t.group, t.frame, ev.clientX, ev.clientY);
        }
    }
    function onUp() {
        if (drag && drag.group) drag.group.classList.remove("vae-lab-dragging");
        drag = null;
    }
    function onDblClick(ev) {
        var t = target(ev);
        if (t) fit(t.group);
    }

    function onInput(ev) {
        var el = ev.target;
        if (!el || !el.classList) return;
        if (el.classList.contains("vae-lab-ba-range")) {
            var cell = el.closest(".vae-lab-cell");
            var ba = cell && cell.querySelector(".vae-lab-ba");
            if (ba) setDivider(ba, Number(el.value));
        } else if (el.classList.contains("vae-lab-filter")) {
            filterVaes(el.closest("#vae_lab_vaes"), el.value);
        }
    }

    function typing(el) {
        if (!el) return false;
        var tag = (el.tagName || "").toLowerCase();
        return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
    }

    function onKey(ev) {
        if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
        var focused = ev.target && ev.target.closest && ev.target.closest(".vae-lab-sync");
        var g = focused || hovered;
        if (!g || !g.isConnected) return;
        var f = firstFrame(g), step = (f ? f.clientWidth : 300) * (ev.shiftKey ? 0.5 : 0.1);
        var done = true;
        switch (ev.key) {
            case "+": case "=": zoomCentre(g, KEY_STEP); break;
            case "-": case "_": zoomCentre(g, 1 / KEY_STEP); break;
            case "0": fit(g); break;
            case "1": oneToOne(g); break;
            case "ArrowLeft": pan(g, step, 0); break;
            case "ArrowRight": pan(g, -step, 0); break;
            case "ArrowUp": pan(g, 0, step); break;
            case "ArrowDown": pan(g, 0, -step); break;
            case "l": case "L": toggleLoupe(g); break;
            case "f": case "F": done = flicker(g); break;
            default: done = false;
        }
        if (done) ev.preventDefault();
    }

    function onClick(ev) {
        var el = ev.target;
        if (!el || !el.closest) return;
        var btn = el.closest("[data-vae-lab]");
        if (btn) {
            var tools = btn.closest(".vae-lab-tools");
            var wrap = tools && tools.closest(".vae-lab-view");
            var g = wrap && wrap.querySelector(".vae-lab-sync");
            if (!g) return;
            var act = btn.getAttribute("data-vae-lab");
            if (act === "fit") fit(g);
            else if (act === "1:1") oneToOne(g);
            else if (act === "in") zoomCentre(g, KEY_STEP);
            else if (act === "out") zoomCentre(g, 1 / KEY_STEP);
            else if (act === "loupe") toggleLoupe(g);
            return;
        }
        var th = el.closest(".vae-lab-table th");
        if (th) sortBy(th);
        var sel = el.closest("[data-vae-lab-select]");
        if (sel) selectVaes(sel.closest("#vae_lab_vaes"), sel.getAttribute("data-vae-lab-select") === "all");
    }

    // ---- the metrics table: click a header to sort (numbers as numbers, empty cells last)
    function sortBy(th) {
        var table = th.closest("table"), tbody = table.tBodies[0];
        var col = Array.prototype.indexOf.call(th.parentNode.children, th);
        var numeric = th.getAttribute("data-num") === "1";
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(tbody.rows);
        rows.sort(function (a, b) {
            var ca = a.cells[col], cb = b.cells[col];
            if (numeric) {
                var va = ca.getAttribute("data-v"), vb = cb.getAttribute("data-v");
                if (!va && !vb) return 0;
                if (!va) return 1;
                if (!vb) return -1;
                return (Number(va) - Number(vb)) * dir;
            }
            return ca.textContent.localeCompare(cb.textContent, undefined, {numeric: true}) * dir;
        });
        rows.forEach(function (r) { tbody.appendChild(r); });
    }

    // ---- the VAE list: a filter box and select all / none (of the shown, enabled ones)
    function vaeLabels(box) {
        return Array.prototype.slice.call(box.querySelectorAll("label")).filter(function (l) {
            return l.querySelector("input[type=checkbox]");
        });
    }

    function filterVaes(box, text) {
        if (!box) return;
        var q = (text || "").toLowerCase().trim();
        vaeLabels(box).forEach(function (l) {
            l.style.display = !q || (l.textContent || "").toLowerCase().indexOf(q) >= 0 ? "" : "none";
        });
    }

    function selectVaes(box, on) {
        if (!box) return;
        vaeLabels(box).forEach(function (l) {
            var input = l.querySelector("input");
            if (l.style.display === "none" || input.disabled) return;
            if (input.checked !== on) input.click(); // tell Gradio, not only the DOM
        });
    }

    function listTools(r) {
        var box = r.querySelector("#vae_lab_vaes");
        if (!box || box.querySelector(".vae-lab-list-tools")) return;
        var bar = document.createElement("div");
        bar.className = "vae-lab-list-tools";
        bar.innerHTML = '<input class="vae-lab-filter" type="search" placeholder="filter VAEs" aria-label="filter the VAE list">' +
            '<button type="button" data-vae-lab-select="all">All</button>' +
            '<button type="button" data-vae-lab-select="none">None</button>';
        var wrap = box.querySelector(".wrap") || box.firstElementChild;
        if (wrap && wrap.parentNode) wrap.parentNode.insertBefore(bar, wrap);
        else box.appendChild(bar);
    }

    // Disable the VAEs the server marked incompatible with the chosen latents ("✕ …").
    function markIncompatible(r) {
        var box = r.querySelector("#vae_lab_vaes");
        if (!box) return;
        vaeLabels(box).forEach(function (label) {
            var input = label.querySelector("input");
            var bad = (label.textContent || "").trim().indexOf("\u2715") === 0;
            if (bad && input.checked) input.click(); // tell Gradio, not only the DOM
            input.disabled = bad;
            label.classList.toggle("vae-lab-incompatible", bad);
        });
        var filter = box.querySelector(".vae-lab-filter");
        if (filter && filter.value) filterVaes(box, filter.value);
    }

    // A new run's view: keep the zoom, and bring the results into sight.
    var lastRun = null;
    function onViews(r) {
        r.querySelectorAll(".vae-lab-sync").forEach(function (g) {
            if (g.getAttribute("data-vae-lab-seen")) return;
            g.setAttribute("data-vae-lab-seen", "1");
            g.querySelectorAll("img.vae-lab-zoom").forEach(function (img) {
                if (!img.complete) img.addEventListener("load", function () { apply(g); }, {once: true});
            });
            apply(g);
        });
        var view = r.querySelector("#vae_lab_view .vae-lab-view[data-run]");
        var run = view && view.getAttribute("data-run");
        if (run && run !== lastRun) {
            lastRun = run;
            var box = view.getBoundingClientRect();
            if (box.top < 0 || box.top > window.innerHeight - 80) view.scrollIntoView({block: "start", behavior: "smooth"});
        }
    }

    // The region of the named view that is on screen, as "x,y,w,h" fractions of the image.
    function cropBox(name) {
        var g = groupsNamed(name || "view")[0];
        if (!g) return "";
        var st = stateOf(g);
        var f = firstFrame(g);
        if (!f) return "";
        var w = f.clientWidth, h = f.clientHeight;
        var x = -st.x / (st.s * w), y = -st.y / (st.s * h);
        return [x, y, 1 / st.s, 1 / st.s].map(function (v) { return v.toFixed(5); }).join(",");
    }

    function root() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function install() {
        var r = root();
        var host = r === document ? document : r;
        host.addEventListener("wheel", onWheel, {passive: false});
        host.addEventListener("mousedown", onDown);
        host.addEventListener("dblclick", onDblClick);
        host.addEventListener("input", onInput);
        host.addEventListener("click", onClick);
        window.addEventListener("mousemove", onMove);
        window.addEventListener("mouseup", onUp);
        window.addEventListener("keydown", onKey);
        var pending = false;
        function refresh() {
            pending = false;
            var rr = root();
            listTools(rr);
            markIncompatible(rr);
            onViews(rr);
        }
        new MutationObserver(function () {
            if (pending) return;
            pending = true;
            requestAnimationFrame(refresh);
        }).observe(host === document ? document.body : host, {childList: true, subtree: true});
        refresh();
    }

    // In the WebUI: opening the VAE Lab tab refreshes its "VAE in use" line and preferred VAE, which
    // Settings, the checkpoint dropdown or the API may have changed since (a hidden button's event).
    function refreshInUse() {
        var tab = typeof get_uiCurrentTabContent === "function" ? get_uiCurrentTabContent() : null;
        var button = tab && tab.id === "tab_vae_lab" ? root().querySelector("#vae_lab_in_use_refresh") : null;
        if (button) button.click();
    }

    if (typeof onUiTabChange === "function") {
        onUiTabChange(refreshInUse); // A1111 and Forge
    }
    window.vaeLab = {zoomAt: zoomAt, fit: fit, reset: fit, oneToOne: oneToOne, state: stateOf, cropBox: cropBox,
                     pixelZoom: pixelZoom, refreshInUse: refreshInUse};
    if (typeof onUiLoaded === "function") {
        onUiLoaded(install); // A1111: gradioApp() is ready then
    } else if (document.body) {
        install();
    } else {
        document.addEventListener("DOMContentLoaded", install);
    }
})();
