/* Loaded on pages with executed widgets, after require.js and before the ipywidgets HTML
 * manager (embed-amd.js); see nb_ipywidgets_js in _config.yml. It serves the manager what it
 * asks for, so a reader's console stays clean offline:
 *
 * 1. Assets. The manager's bundles find their icon fonts next to the URL require.js gives their
 *    module ("<page folder>/@jupyter-widgets/html-manager/dist/..."), which does not exist.
 *    Mapping the module names to this folder (where `make vendor` copies the fonts) makes them
 *    load from jupyter-widgets/, at any page depth.
 * 2. MathJax. The manager typesets widget labels with MathJax 2's MathJax.Hub.Queue; the book
 *    ships MathJax 3. A small MathJax.Hub.Queue forwards "Typeset" jobs to MathJax 3's
 *    typesetPromise (it is added on DOMContentLoaded, when the deferred MathJax 3 has run and
 *    before the manager renders on "load"). Pages without equations load no MathJax, and the
 *    manager then skips typesetting. */
(function () {
  "use strict";
  var here = new URL(".", document.currentScript.src).href;
  window.requirejs.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": here.replace(/\/$/, ""),
      "@jupyter-widgets": here.replace(/\/$/, "")
    }
  });

  function typeset(element) {
    var mathjax = window.MathJax;
    var ready = mathjax.startup && mathjax.startup.promise ? mathjax.startup.promise : Promise.resolve();
    return ready.then(function () {
      return mathjax.typesetPromise ? mathjax.typesetPromise(element ? [element] : undefined) : null;
    }).catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.version || mathjax.version.charAt(0) !== "3") {
      return;
    }
    mathjax.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset") {
            typeset(job[2]);
          } else if (typeof job === "function") {
            job();
          }
        });
      }
    };
  });
})();
