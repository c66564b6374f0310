/**
 * OpenAI's images API, as its official clients call it:
 *
 *   POST /v1/images/generations  JSON → { created, data: [{ b64_json }], size, output_format }
 *   POST /v1/images/edits        multipart: image (or image[]: the first is used), mask (its
 *                                fully transparent pixels are repainted, as OpenAI's), prompt,
 *                                n, size, …: image-to-image, inpainting with a mask
 *
 * Errors in OpenAI's shape ({ error: { message, type, param, code } }), so that its SDKs raise
 * their own error classes with the message and the parameter at fault.
 */
import multipart, { type MultipartFile, type MultipartValue } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { runJob, type ServerContext } from '../context.js';
import { errorHandler, openaiErrorBody } from '../http-errors.js';
import { decodeMask, encodePng, toBase64 } from '../images.js';
import { JobError, type JobResult } from '../job-queue.js';
import { OPENAI_FIELD, editsSchema, generationsSchema, jobRequestOf, type OpenAIBody } from '../openai-request.js';

/** The multipart parts an edit may have: the image (OpenAI's newer models take several as image[]), the mask, the fields. */
const MULTIPART_LIMITS = { files: 4, fields: 64, parts: 68, fieldSize: 1024 * 1024 } as const;

/** OpenAI's answer. */
function answer(result: JobResult, format: OpenAIBody['response_format']) {
  return {
    created: Math.floor(Date.now() / 1000),
    data: result.images.map((png) => (format === 'url' ? { url: `data:image/png;base64,${png}` } : { b64_json: png })),
    output_format: 'png',
    size: `${result.settings.width}x${result.settings.height}`,
  };
}

/** A multipart edit: its files by field name, its other fields as the JSON body they stand for. */
interface EditForm {
  image: Buffer;
  mask?: Buffer;
  body: Record<string, unknown>;
}

/** Numbers and booleans arrive as text in a form: taken as the schema's types, where the text is one. */
function formValue(key: string, text: string, schema: ReturnType<typeof editsSchema>): unknown {
  const property = (schema.properties as Record<string, { type?: unknown }>)[key];
  const types = ([] as unknown[]).concat(property?.type ?? []);
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(text.trim())) return Number(text);
  if (types.includes('boolean') && (text === 'true' || text === 'false')) return text === 'true';
  if (types.includes('array')) {
    try {
      return JSON.parse(text);
    } catch {
      throw new JobError({ status: 400, code: 'invalid_request', field: key, message: `${key} must be JSON (an array)` });
    }
  }
  return text;
}

async function readEditForm(request: FastifyRequest, schema: ReturnType<typeof editsSchema>): Promise<EditForm> {
  if (!request.isMultipart()) throw new JobError({ status: 415, code: 'unsupported_media_type', message: 'images/edits takes multipart/form-data (image, mask, prompt, …)' });
  const files: Record<string, Buffer[]> = {};
  const body: Record<string, unknown> = {};
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      const file = part as MultipartFile;
      const name = file.fieldname.replace(/\[\]$/, '');
      if (name !== 'image' && name !== 'mask') throw new JobError({ status: 400, code: 'invalid_request', field: file.fieldname, message: `${file.fieldname}: only image and mask are files` });
      (files[name] ??= []).push(await file.toBuffer());
    } else {
      const field = part as MultipartValue<unknown>;
      if (field.valueTruncated) throw new JobError({ status: 413, code: 'field_too_large', field: field.fieldname, message: `${field.fieldname} is over ${MULTIPART_LIMITS.fieldSize} bytes` });
      body[field.fieldname] = typeof field.value === 'string' ? formValue(field.fieldname, field.value, schema) : field.value;
    }
  }
  const image = files.image?.[0];
  if (!image) throw new JobError({ status: 400, code: 'invalid_request', field: 'image', message: 'image is required: the picture to edit, as a file' });
  if ((files.mask?.length ?? 0) > 1) throw new JobError({ status: 400, code: 'invalid_request', field: 'mask', message: 'mask: one mask file' });
  return { image, ...(files.mask ? { mask: files.mask[0]! } : {}), body };
}

export async function registerOpenAIRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.setErrorHandler(errorHandler(openaiErrorBody, (field) => OPENAI_FIELD[field] ?? field));
  await app.register(multipart, { limits: { ...MULTIPART_LIMITS, fileSize: ctx.limits.bodyBytes } });

  app.post<{ Body: OpenAIBody }>('/v1/images/generations', { schema: { body: generationsSchema(ctx.limits) } }, async (request, reply) => {
    const result = await runJob(ctx, jobRequestOf(request.body, ctx.catalog.current), reply);
    return answer(result, request.body.response_format);
  });

  const schema = editsSchema(ctx.limits);
  app.post('/v1/images/edits', async (request: FastifyRequest, reply: FastifyReply) => {
    const form = await readEditForm(request, schema);
    const validate = request.compileValidationSchema(schema);
    if (!validate(form.body)) throw Object.assign(new Error('invalid body'), { validation: validate.errors, statusCode: 400 });
    const body = form.body as unknown as OpenAIBody;
    let mask: string | undefined;
    if (form.mask) {
      const gray = await decodeMask(form.mask, 'mask', 'openai');
      mask = toBase64(await encodePng(gray));
    }
    const result = await runJob(ctx, jobRequestOf(body, ctx.catalog.current, { image: toBase64(form.image), ...(mask ? { mask } : {}) }), reply);
    return answer(result, body.response_format);
  });
}
