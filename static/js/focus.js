// Keyboard focus across htmx swaps (every composer, editor and filter change is one).
// htmx keeps focus only on an element with an id that the new content repeats; a button or a
// checkbox without one dropped focus to <body>, and a keyboard user had to tab from the top again.
// Before a swap this remembers how to find the focused control again (its id, else its form
// field name and value); after it, focus goes back to that control, or to the refusal the answer
// carries, or to the swapped region itself.
(function () {
  "use strict";
  var remembered = null;

  function describe(element) {
    if (!element || element === document.body) return null;
    if (element.id) return { id: element.id };
    if (element.name) {
      return { name: element.name, value: element.value || "", tag: element.tagName };
    }
    return null;
  }

  function find(description) {
    if (!description) return null;
    if (description.id) return document.getElementById(description.id);
    var candidates = document.getElementsByName(description.name);
    for (var i = 0; i < candidates.length; i++) {
      var candidate = candidates[i];
      if (candidate.tagName === description.tag && (candidate.value || "") === description.value) {
        return candidate;
      }
    }
    return candidates.length === 1 ? candidates[0] : null;
  }

  document.addEventListener("htmx:beforeSwap", function () {
    remembered = describe(document.activeElement);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var active = document.activeElement;
    if (active && active !== document.body) return; // htmx kept it, or the user moved on
    var swapped = event.detail.target;
    // After an outerHTML swap the target is the old, detached element: find its replacement.
    if (swapped && !document.contains(swapped) && swapped.id) {
      swapped = document.getElementById(swapped.id);
    }
    var refusal = swapped && swapped.querySelector ? swapped.querySelector("[role=alert]") : null;
    var target = find(remembered) || refusal || swapped;
    remembered = null;
    if (!target || !document.contains(target)) return;
    if (!target.matches("a[href], button, input, select, textarea, [tabindex]")) {
      target.setAttribute("tabindex", "-1"); // a region: focusable by script, not a tab stop
    }
    target.focus({ preventScroll: true });
  });
})();
