// SPDX-License-Identifier: BSD-2-Clause
#include "ui_assets.h"

#include <string.h>

/* generated from ui/ by the Makefile: UI_ASSETS(X) lists X(path, type, array) */
#include "ui_assets_data.h"

#define UI_ASSET_ENTRY(path, type, array) {path, type, array, sizeof(array)},
static const struct ui_asset assets[] = {UI_ASSETS(UI_ASSET_ENTRY)};

const struct ui_asset *ui_asset_find(const char *path)
{
	size_t i;

	if (!strcmp(path, "/"))
		path = "/index.html";
	for (i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
		if (!strcmp(assets[i].path, path))
			return &assets[i];
	return NULL;
}
