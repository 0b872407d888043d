// MathJax 3 for the Markdown pages (arithmatex writes \( \) and \[ \]) and for the tutorials,
// whose notebook cells keep Jupyter's $ and $$ (code and pre blocks are skipped).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  }
};
document$.subscribe(() => { if (MathJax.typesetPromise) { MathJax.typesetPromise(); } });
