/**
 * Errors of the node agent.
 */
import { defineError } from '../protocol/index.js';

/** An archive or image that is not what it claims: corrupt tar, bad JSON, wrong digest. */
export const ImageFormatError = defineError('TRP_ERR_IMAGE_FORMAT', 'ImageFormatError');
export type ImageFormatError = InstanceType<typeof ImageFormatError>;
/** An archive entry that would write outside the rootfs (`..`, escaping symlink or hard link). */
export const UnsafeArchiveError = defineError('TRP_ERR_UNSAFE_ARCHIVE', 'UnsafeArchiveError');
export type UnsafeArchiveError = InstanceType<typeof UnsafeArchiveError>;
/** No image by that reference in the store. */
export const ImageNotFoundError = defineError('TRP_ERR_IMAGE_NOT_FOUND', 'ImageNotFoundError');
export type ImageNotFoundError = InstanceType<typeof ImageNotFoundError>;
/** An image reference that does not parse. */
export const ImageRefError = defineError('TRP_ERR_IMAGE_REF', 'ImageRefError');
export type ImageRefError = InstanceType<typeof ImageRefError>;
/** A crun call failed; the message carries crun's own words. */
export const RuntimeError = defineError('TRP_ERR_RUNTIME', 'RuntimeError');
export type RuntimeError = InstanceType<typeof RuntimeError>;
