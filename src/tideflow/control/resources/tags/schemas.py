"""Wire shapes of /tags (as the Streamkap API and its Terraform provider use them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tideflow.control.resources.wire import Body

TagType = Literal["sources", "destinations", "pipelines", "transforms", "topics", "environment"]


class TagCreate(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str = Field("", max_length=2000)
    type: list[TagType] = Field(
        default_factory=list, description="Entity kinds the tag applies to."
    )
    custom: bool | None = Field(None, description="Ignored: user-created tags are custom.")
    system: bool | None = Field(None, description="Ignored: only built-in tags are system tags.")
    created_from: Literal["terraform", "web", "api"] = "api"


class TagUpdate(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(None, max_length=2000)
    type: list[TagType] | None = None
    custom: bool | None = None
    system: bool | None = None
    created_from: Literal["terraform", "web", "api"] | None = None


class TagOut(BaseModel):
    id: str
    name: str
    description: str
    type: list[str]
    system: bool
    custom: bool


class TagList(BaseModel):
    tags: list[TagOut]
