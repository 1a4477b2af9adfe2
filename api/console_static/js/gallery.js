// Images the API stores as artifacts: fetched with the key and shown from blob URLs.

import { blob } from "./api.js";
import { h } from "./dom.js";

/** Return an <img> that loads the artifact at `url`; its blob URL is freed when `signal` aborts. */
export function artifactImage(url, alt, signal) {
  const img = h("img", { alt, class: "artifact", decoding: "async" });
  blob(url, { signal })
    .then((data) => {
      const src = URL.createObjectURL(data);
      img.src = src;
      signal.addEventListener("abort", () => URL.revokeObjectURL(src), { once: true });
    })
    .catch((error) => {
      if (!signal.aborted)
        img.replaceWith(
          h("p", { class: "problem", role: "alert" }, `${alt} did not load: ${error.message}`),
        );
    });
  return img;
}

/** Return a gallery of a result's images (each links to nothing: they live in memory only). */
export function gallery(images, signal) {
  const items = images.map((image, i) =>
    h(
      "li",
      {},
      h(
        "figure",
        {},
        artifactImage(image.url, `Generated image ${i + 1} of ${images.length}`, signal),
        h("figcaption", {}, `${i + 1} · ${image.size} bytes`),
      ),
    ),
  );
  return h("ul", { class: "gallery", "aria-label": "Generated images" }, items);
}
