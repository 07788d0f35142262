// VAE Lab: synchronized zoom/pan across compared images, and the before/after slider.
//
// A classic script. Inside A1111 it is loaded with every extension's javascript/*.js; the
// standalone app runs it once on page load. All listeners are delegated from the document
// (or A1111's gradioApp() root), so views that Gradio re-renders keep working without
// re-binding, and `onUiLoaded` is not needed at all.
//
// Every `.vae-lab-sync` container is one zoom group: the `.vae-lab-zoom` images inside it
// share one transform `translate(x, y) scale(s)` (origin top-left, in frame pixels).
(function () {
    "use strict";
    if (window.vaeLab) return; // loaded twice (WebUI + app injection): keep the first
    var MIN = 1, MAX = 32, STEP = 1.2;
    var states = new WeakMap();

    function stateOf(group) {
        var st = states.get(group);
        if (!st) { st = {s: 1, x: 0, y: 0}; states.set(group, st); }
        return st;
    }

    function clampPan(st, frame) {
        // keep the zoomed image covering the frame: no empty margins
        var w = frame.clientWidth, h = frame.clientHeight;
        st.x = Math.min(0, Math.max(w - w * st.s, st.x));
        st.y = Math.min(0, Math.max(h - h * st.s, st.y));
    }

    function apply(group) {
        var st = stateOf(group);
        var t = "translate(" + st.x + "px, " + st.y + "px) scale(" + st.s + ")";
        group.querySelectorAll(".vae-lab-zoom").forEach(function (img) { img.style.transform = t; });
        group.classList.toggle("vae-lab-zoomed", st.s > 1);
    }

    function target(ev) {
        var el = ev.target;
        if (!el || !el.closest) return null;
        var frame = el.closest(".vae-lab-frame");
        var group = frame && frame.closest(".vae-lab-sync");
        return group ? {frame: frame, group: group} : null;
    }

    function zoomAt(group, frame, clientX, clientY, factor) {
        var st = stateOf(group);
        var r = frame.getBoundingClientRect();
        var px = clientX - r.left, py = clientY - r.top;
        var s2 = Math.min(MAX, Math.max(MIN, st.s * factor));
        // keep the point under the cursor still
        st.x = px - (px - st.x) * (s2 / st.s);
        st.y = py - (py - st.y) * (s2 / st.s);
        st.s = s2;
        clampPan(st, frame);
        apply(group);
    }

    function reset(group) {
        states.set(group, {s: 1, x: 0, y: 0});
        apply(group);
    }

    function onWheel(ev) {
        var t = target(ev);
        if (!t) return;
        ev.preventDefault();
        zoomAt(t.group, t.frame, ev.clientX, ev.clientY, ev.deltaY < 0 ? STEP : 1 / STEP);
    }

    var drag = null;
    function onDown(ev) {
        if (ev.button !== 0) return;
        var t = target(ev);
        if (!t) return;
        ev.preventDefault();
        drag = {group: t.group, frame: t.frame, x: ev.clientX, y: ev.clientY};
        t.group.classList.add("vae-lab-dragging");
    }
    function onMove(ev) {
        if (!drag) return;
        var st = stateOf(drag.group);
        st.x += ev.clientX - drag.x;
        st.y += ev.clientY - drag.y;
        drag.x = ev.clientX;
        drag.y = ev.clientY;
        clampPan(st, drag.frame);
        apply(drag.group);
    }
    function onUp() {
        if (drag) drag.group.classList.remove("vae-lab-dragging");
        drag = null;
    }
    function onDblClick(ev) {
        var t = target(ev);
        if (t) reset(t.group);
    }

    function onSlider(ev) {
        var el = ev.target;
        if (!el || !el.classList || !el.classList.contains("vae-lab-ba-range")) return;
        var cell = el.closest(".vae-lab-cell");
        var ba = cell && cell.querySelector(".vae-lab-ba");
        if (ba) ba.style.setProperty("--vae-lab-pos", el.value + "%");
    }

    // Disable the VAEs the server marked incompatible with the chosen latents ("✕ …").
    function markIncompatible(root) {
        var box = root.querySelector("#vae_lab_vaes");
        if (!box) return;
        box.querySelectorAll("label").forEach(function (label) {
            var input = label.querySelector("input");
            if (!input) return;
            var bad = (label.textContent || "").trim().indexOf("\u2715") === 0;
            if (bad && input.checked) input.click(); // tell Gradio, not only the DOM
            input.disabled = bad;
            label.classList.toggle("vae-lab-incompatible", bad);
        });
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
        host.addEventListener("input", onSlider);
        window.addEventListener("mousemove", onMove);
        window.addEventListener("mouseup", onUp);
        var pending = false;
        new MutationObserver(function () {
            if (pending) return;
            pending = true;
            requestAnimationFrame(function () { pending = false; markIncompatible(root()); });
        }).observe(host === document ? document.body : host, {childList: true, subtree: true});
        markIncompatible(r);
    }

    // In the WebUI: opening the VAE Lab tab refreshes its "VAE in use" line and preferred VAE, which
    // Settings, the checkpoint dropdown or the API may have changed since (a hidden button's event).
    function refreshInUse() {
        var tab = typeof get_uiCurrentTabContent === "function" ? get_uiCurrentTabContent() : null;
        var button = tab && tab.id === "tab_vae_lab" ? root().querySelector("#vae_lab_in_use_refresh") : null;
        if (button) button.click();
    }

    window.vaeLab = {zoomAt: zoomAt, reset: reset, state: stateOf, refreshInUse: refreshInUse};
    if (typeof onUiTabChange === "function") {
        onUiTabChange(refreshInUse); // A1111 and Forge
    }
    if (typeof onUiLoaded === "function") {
        onUiLoaded(install); // A1111: gradioApp() is ready then
    } else if (document.body) {
        install();
    } else {
        document.addEventListener("DOMContentLoaded", install);
    }
})();
