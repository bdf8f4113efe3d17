// Shoppers' photos are decoded and downscaled in the browser before upload, so a 5–12 MB phone photo
// becomes a JPEG of about 100 KB, well inside the API's 4 MB limit.

const MAX_SIDE = 640;
const JPEG_QUALITY = 0.85;
// Small photos in a format the API reads are sent untouched: no second round of JPEG loss.
const SEND_AS_IS_TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const SEND_AS_IS_BYTES = 1024 * 1024;

export class PhotoError extends Error {}

/**
 * The photo as the API wants it: {blob, dataUrl, width, height, originalWidth, originalHeight}.
 * Throws PhotoError with a message for the shopper when the file is not a readable image.
 */
export async function preparePhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file); // applies the EXIF orientation
  } catch {
    throw new PhotoError(`“${file.name}” isn’t an image this browser can read. Choose a JPEG, PNG or WebP photo.`);
  }
  try {
    const { width, height } = bitmap;
    const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
    const original = { originalWidth: width, originalHeight: height };
    if (scale === 1 && SEND_AS_IS_TYPES.has(file.type) && file.size <= SEND_AS_IS_BYTES) {
      return { blob: file, dataUrl: await toDataUrl(file), width, height, ...original };
    }
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff"; // transparency over white, as the catalog's product shots
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve, reject) => canvas.toBlob(
      (result) => (result ? resolve(result) : reject(new PhotoError("This photo could not be resized. Try a smaller one."))),
      "image/jpeg", JPEG_QUALITY));
    return { blob, dataUrl: await toDataUrl(blob), width: canvas.width, height: canvas.height, ...original };
  } finally {
    bitmap.close();
  }
}

function toDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new PhotoError("This photo could not be read."));
    reader.readAsDataURL(blob);
  });
}
