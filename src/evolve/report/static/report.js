(function () {
  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }
  function byNode(id) {
    return '[data-node="' + (window.CSS && CSS.escape ? CSS.escape(id) : id) + '"]';
  }
  each("button[data-action]", function (button) {
    button.addEventListener("click", function () {
      var open = button.dataset.action === "expand";
      each("details.tl-group", function (d) { d.open = open; });
    });
  });
  var lit = null;
  function light(id) {
    if (id === lit) return;
    each(".hl", function (el) { el.classList.remove("hl"); });
    lit = id;
    if (id === null) return;
    var q = byNode(id);
    each(".node" + q + ", .tl-row" + q + ", .node-row" + q, function (el) {
      el.classList.add("hl");
    });
  }
  document.addEventListener("mouseover", function (event) {
    var el = event.target.closest && event.target.closest("[data-node]");
    light(el ? el.dataset.node : null);
  });
  each("svg.graph .node", function (node) {
    function go() {
      var q = byNode(node.dataset.node);
      var row = document.querySelector(".timeline " + q) || document.querySelector(".node-row" + q);
      if (!row) return;
      if (row.tagName === "DETAILS") row.open = true;
      row.scrollIntoView({ behavior: "smooth", block: "center" });
    }
    node.addEventListener("click", go);
    node.addEventListener("keydown", function (event) { if (event.key === "Enter") go(); });
  });
  document.body.dataset.ready = "1";
})();
