// Building DOM nodes without innerHTML: file names and server messages are always text.

export const $ = (selector, root = document) => root.querySelector(selector);

/** h("a", {href, class, text, onclick}, ...children): attributes, text and listeners. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  const present = (child) => child !== null && child !== undefined && child !== false;
  node.append(...children.filter(present));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  file: "M7 3h7l5 5v12a1 1 0 0 1-1 1H7a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1Zm7 0v5h5M10 12.5v5l4-2.5-4-2.5",
  done: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18Zm-4 9.5 2.8 2.8L16.5 9.5",
  failed: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18Zm0 5v5.5m0 3v.01",
  download: "M12 4v11m0 0-4.5-4.5M12 15l4.5-4.5M5 19.5h14",
  retry: "M4.5 12a7.5 7.5 0 1 0 2.2-5.3M4.5 4.5v3.8h3.8",
};

/** A decorative stroke icon (hidden from screen readers). */
export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}
