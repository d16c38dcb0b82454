// Files may be dropped anywhere on the page; the drop zone lights up while dragging.

/** `open()`: the page takes files (signed in); `addFiles(files)`: what a drop does. */
export function wireDragAndDrop(dropzone, { open, addFiles }) {
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    dropzone.classList.add("is-dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropzone.classList.remove("is-dragging");
  });
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // also when signed out: the browser would open the file
    event.dataTransfer.dropEffect = open() ? "copy" : "none";
  });
  window.addEventListener("drop", (event) => {
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    depth = 0;
    dropzone.classList.remove("is-dragging");
    if (!open()) return; // not signed in: nothing is sent
    addFiles(event.dataTransfer.files);
  });
}
