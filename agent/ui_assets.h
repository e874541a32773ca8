/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The web UI's files (ui/: HTML, CSS, JavaScript), built into the binary (the Makefile
 * turns them into $(GEN)/ui_assets_data.h with xxd), so that the UI works on a host with
 * no network and no files beside the agent.
 */
#ifndef HOPTRACE_UI_ASSETS_H
#define HOPTRACE_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char *path; /* "/app.js" */
	const char *content_type;
	const unsigned char *data;
	size_t len;
};

/* The file served at path ("/" is "/index.html"), NULL when there is none. */
const struct ui_asset *ui_asset_find(const char *path);

#endif
